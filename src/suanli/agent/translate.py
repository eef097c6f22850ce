"""Between the exchange and a backend: a lease becomes a ``WorkSpec``; what the backend
says about the job becomes a report body.

A job's ``WorkSpec`` id is its job id (so its default checkpoint folder is shared by every
attempt on this site); a replica's is its allocation id. The resume contract comes from
the job's spec: checkpointing work (``checkpoint.every_h``) resumes from the newest
checkpoint in ``SUANLI_CHECKPOINT_DIR``; ``SUANLI_ATTEMPT`` counts its placements.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from suanli.agent.backend import (
    Handle,
    JobState,
    JobStatus,
    ResumeContract,
    ResumeMode,
    Usage,
    WorkSpec,
)
from suanli.agent.exchange import Lease

__all__ = [
    "DEFAULT_STOP_GRACE_S",
    "clean_reason",
    "end_report",
    "own_usage",
    "running_report",
    "usage_json",
    "work_spec",
]

DEFAULT_STOP_GRACE_S = 10.0
LOG_TAIL_CHARS = 4000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def work_spec(lease: Lease, gpu_model: str | None, port: int | None) -> WorkSpec:
    """The backend's view of a lease; ``InvalidInput`` if it cannot be one (no command,
    a bad env name)."""
    env = dict(lease.env)
    if port is not None:
        env.setdefault("PORT", str(port))
    every_s = lease.checkpoint_every_h * 3600.0 if lease.checkpoint_every_h else None
    resume = ResumeContract(
        mode=ResumeMode.CHECKPOINT if every_s else ResumeMode.RESTART,
        checkpoint_every_s=every_s,
        stop_grace_s=DEFAULT_STOP_GRACE_S if lease.stop_grace_s is None else lease.stop_grace_s,
    )
    return WorkSpec(
        id=lease.item_id if lease.kind == "job" else lease.allocation_id,
        command=lease.command or "",
        gpus=lease.gpus,
        env=env,
        working_dir=Path(lease.working_dir) if lease.working_dir else None,
        checkpoint_dir=Path(lease.checkpoint_dir) if lease.checkpoint_dir else None,
        resume=resume,
        gpu_model=gpu_model,
        nodes=lease.nodes,
        attempt=lease.attempt,
    )


def clean_reason(text: str, limit: int = 100) -> str | None:
    """One line of at most ``limit`` characters (the exchange's reason field), or None."""
    line = _CONTROL.sub(" ", text).strip()
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1] + "…"


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "gpu_seconds": max(0.0, usage.gpu_seconds),
        "gpus": usage.gpus,
        "source": usage.source[:10_000],
        "started_at_s": usage.started_at_s,
        "ended_at_s": usage.ended_at_s,
    }


def own_usage(usage: Usage, since_s: float | None, now_s: float) -> Usage:
    """The part of ``usage`` from ``since_s`` on: a replica taken over by a new placement
    bills that placement only for its own time (None: all of it)."""
    if since_s is None:
        return usage
    end = usage.ended_at_s if usage.ended_at_s is not None else now_s
    own_s = max(0.0, end - since_s) * usage.gpus
    return Usage(min(usage.gpu_seconds, own_s), usage.gpus, since_s, usage.ended_at_s, usage.source)


def _base(lease: Lease, state: str, handle: Handle | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "allocation_id": lease.allocation_id,
        "lease_token": lease.lease_token,
        "state": state,
    }
    if handle is not None:
        body["backend_job_id"] = handle.id[:100]
    return body


def running_report(
    lease: Lease, handle: Handle, backend: str, endpoint: str | None = None
) -> dict[str, Any]:
    body = _base(lease, "running", handle)
    body["reason"] = clean_reason(f"running on {backend} as {handle.id}")
    if endpoint is not None:
        body["endpoint"] = endpoint
    return body


def end_report(
    lease: Lease,
    handle: Handle | None,
    status: JobStatus | None,
    usage: Usage | None,
    *,
    state: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A report that ends the allocation: succeeded / failed from the backend's final
    state (a job the site cancelled by itself is ``preempted``: it runs again elsewhere),
    or ``state`` as given. GPU-hours come from the backend's accounting when known."""
    if state is None:
        assert status is not None
        state = {
            JobState.SUCCEEDED: "succeeded",
            JobState.FAILED: "failed",
            JobState.CANCELLED: "preempted",
        }.get(status.state, "failed")
    body = _base(lease, state, handle)
    if status is not None:
        if status.exit_code is not None:
            body["exit_code"] = status.exit_code
        tail = status.log_tail.replace("\x00", "")[-LOG_TAIL_CHARS:]
        if tail:
            body["log_tail"] = tail
    words = reason or (status.reason if status is not None else "")
    if state == "preempted" and status is not None and reason is None:
        words = f"cancelled on the site: {status.reason}"
    body["reason"] = clean_reason(words)
    if usage is not None:
        body["usage"] = usage_json(usage)
        body["gpu_hours"] = max(0.0, usage.gpu_seconds) / 3600.0
    return {k: v for k, v in body.items() if v is not None}
