"""The ``ray`` backend: work as Ray jobs, through the Jobs API of a Ray head's dashboard.

Plain HTTP (httpx) to the dashboard (default ``http://127.0.0.1:8265``); the agent does not
import ray. A job is one entrypoint process: ``mkdir -p`` its folders, ``cd`` into the
working directory, ``exec`` the command, with the SUANLI_* variables as the runtime env.

GPUs are asked for as ``entrypoint_num_gpus`` when ``gpu_resource`` is ``GPU`` (Ray then sets
``CUDA_VISIBLE_DEVICES`` to the devices it assigns; on a GPU-less host the head may declare
fake ones with ``--num-gpus``), or as ``entrypoint_resources={gpu_resource: N}`` for a
custom resource such as ``H100`` (counted, but Ray binds no device).

Endpoints used::

    POST /api/jobs/                 submit (submission_id = suanli-<work>-<attempt>)
    GET  /api/jobs/{id}             status, driver_exit_code, start_time / end_time (ms)
    GET  /api/jobs/{id}/logs        log tail
    POST /api/jobs/{id}/stop        cancel
    GET  /api/v0/nodes              discovery: resources_total of each alive node
    GET  /api/cluster_status        discovery: resources in use (the autoscaler's report,
                                    refreshed every few seconds, so free GPUs lag a little)
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from suanli.agent._settings import parse_settings
from suanli.agent.backend import (
    BackendError,
    BackendUnavailable,
    Capacity,
    Feature,
    Handle,
    JobState,
    JobStatus,
    Limitation,
    PoolCapacity,
    SubmitRefused,
    Usage,
    WorkSpec,
)
from suanli.agent.jobenv import LOG_TAIL_LINES, job_paths, shell_command, suanli_env
from suanli.domain import Fabric

__all__ = ["RayBackend", "RaySettings", "ray_backend"]

NAME = "ray"

_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}


class RaySettings(BaseModel):
    """``address``: the dashboard. ``gpu_resource``: ``GPU`` or a custom resource name.
    ``gpu_model``: the model to report (None: Ray's ``accelerator_type:*`` resource, else
    the custom resource's name). ``runs_dir``: default working/checkpoint dirs, as paths on
    the node that runs the entrypoint. ``simulated``: the GPUs are declared, not real."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = "http://127.0.0.1:8265"
    runs_dir: Path
    gpu_resource: str = "GPU"
    gpu_model: str | None = None
    fabric: Fabric = Fabric.ETHERNET
    simulated: bool = False
    timeout_s: float = Field(default=10.0, gt=0)


class RayBackend:
    """Runs work as Ray jobs (see the module docstring)."""

    def __init__(
        self,
        settings: RaySettings,
        *,
        transport: httpx.BaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._now = now
        self._http = httpx.Client(
            base_url=settings.address, timeout=settings.timeout_s, transport=transport
        )

    @property
    def name(self) -> str:
        return NAME

    @property
    def _custom(self) -> bool:
        return self._settings.gpu_resource != "GPU"

    def limitations(self) -> tuple[Limitation, ...]:
        limits = [
            Limitation(
                Feature.USAGE,
                "Ray's job record starts at submission: time spent pending and setting up the "
                "runtime env is metered as GPU time (millisecond times)",
            ),
            Limitation(
                Feature.STOP_GRACE,
                "TERM to KILL is the head's "
                "RAY_JOB_STOP_WAIT_TIME_S (default 3 s), not the "
                "work's stop_grace_s",
            ),
            Limitation(
                Feature.MULTI_NODE,
                "a job is one entrypoint process on one node; Ray "
                "tasks it starts itself are not metered here",
            ),
            Limitation(
                Feature.FILES,
                "working and checkpoint dirs are paths on the node that "
                "runs the entrypoint; nothing is uploaded",
            ),
            Limitation(Feature.ENERGY, "not metered"),
            Limitation(
                Feature.FABRIC,
                "Ray does not describe the network: fabric is "
                f"configured ({self._settings.fabric.value})",
            ),
        ]
        if self._custom:
            limits.append(
                Limitation(
                    Feature.GPU_BINDING,
                    f"GPUs are the custom resource {self._settings.gpu_resource!r}: Ray counts "
                    "them but binds no device; CUDA_VISIBLE_DEVICES is not set",
                )
            )
        if self._settings.simulated:
            limits.append(
                Limitation(
                    Feature.SIMULATED_GPUS, "GPUs are declared to the Ray head, not real devices"
                )
            )
        return tuple(limits)

    def discover(self) -> Capacity:
        resource = self._settings.gpu_resource
        nodes = self._get("/api/v0/nodes", params={"limit": 10000})
        rows = nodes.get("data", {}).get("result", {}).get("result", [])
        groups: dict[tuple[str, int], int] = {}
        for row in rows:
            if row.get("state") != "ALIVE":
                continue
            total = row.get("resources_total") or {}
            per_node = int(total.get(resource, 0))
            if per_node:
                key = (self._model(total), per_node)
                groups[key] = groups.get(key, 0) + 1
        free = self._free(resource)
        pools = []
        for (model, per_node), count in sorted(groups.items()):
            gpu_count = per_node * count
            pools.append(
                PoolCapacity(
                    name=f"ray-{model.lower().replace(' ', '-')}"
                    + (f"-{per_node}x" if len(groups) > 1 else ""),
                    gpu_model=model,
                    gpu_count=gpu_count,
                    gpus_per_node=per_node,
                    fabric=self._settings.fabric,
                    # Ray reports use per resource, not per node: share it out in node order.
                    gpus_free=gpu_count if free is None else max(0, min(gpu_count, free)),
                    simulated=self._settings.simulated,
                )
            )
            if free is not None:
                free -= pools[-1].gpus_free
        return Capacity(backend=NAME, pools=tuple(pools), source=f"ray {self._settings.address}")

    def submit(self, work: WorkSpec) -> Handle:
        if work.nodes > 1:
            raise SubmitRefused(
                f"work {work.id}: a Ray job's entrypoint runs on one node, not {work.nodes}"
            )
        paths = job_paths(self._settings.runs_dir, work)
        wd, cp = shlex.quote(str(paths.working_dir)), shlex.quote(str(paths.checkpoint_dir))
        body: dict[str, Any] = {
            "submission_id": work.job_name,
            "entrypoint": f"mkdir -p {wd} {cp} && cd {wd} && exec {shell_command(work.command)}",
            "runtime_env": {
                "env_vars": {**work.env, **suanli_env(work, NAME, paths.checkpoint_dir)}
            },
            "metadata": {"suanli_work_id": work.id, "suanli_attempt": str(work.attempt)},
        }
        if work.gpus and self._custom:
            body["entrypoint_resources"] = {self._settings.gpu_resource: work.gpus}
        elif work.gpus:
            body["entrypoint_num_gpus"] = work.gpus
        try:
            resp = self._http.post("/api/jobs/", json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"ray dashboard {self._settings.address}: {exc}") from exc
        if resp.status_code >= 400:
            raise SubmitRefused(f"ray refused {work.job_name}: {_error_text(resp)}")
        return Handle(
            backend=NAME,
            id=str(resp.json()["submission_id"]),
            work_id=work.id,
            attempt=work.attempt,
            gpus=work.gpus,
            run_dir=None,
        )

    def status(self, handle: Handle) -> JobStatus:
        info = self._job(handle)
        state = _STATES.get(str(info.get("status")), JobState.FAILED)
        code = info.get("driver_exit_code")
        exit_code = (
            None
            if code is None or not state.terminal
            else (int(code) if int(code) >= 0 else 128 - int(code))
        )
        message = str(info.get("message") or info.get("status"))
        logs = self._get(f"/api/jobs/{handle.id}/logs").get("logs", "")
        tail = "\n".join(str(logs).splitlines()[-LOG_TAIL_LINES:])
        return JobStatus(
            state=state, exit_code=exit_code, reason=message.splitlines()[0], log_tail=tail
        )

    def cancel(self, handle: Handle) -> None:
        """Asks Ray to stop the job; returns once the head has accepted (the processes go
        within RAY_JOB_STOP_WAIT_TIME_S; ``status`` says when the job has ended)."""
        try:
            resp = self._http.post(f"/api/jobs/{handle.id}/stop")
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"ray dashboard {self._settings.address}: {exc}") from exc
        if resp.status_code >= 400:
            raise BackendError(f"ray could not stop {handle.id}: {_error_text(resp)}")

    def usage(self, handle: Handle) -> Usage:
        info = self._job(handle)
        source = "ray job record (submission to end, ms)"
        start_ms, end_ms = info.get("start_time"), info.get("end_time")
        if info.get("status") == "PENDING" or not start_ms:
            return Usage(0.0, handle.gpus, None, None, source)
        start = float(start_ms) / 1000.0
        end = float(end_ms) / 1000.0 if end_ms else None
        held_s = max(0.0, (end if end is not None else self._now()) - start)
        return Usage(held_s * handle.gpus, handle.gpus, start, end, source)

    def close(self) -> None:
        self._http.close()

    # --- internals

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"ray dashboard {self._settings.address}: {exc}") from exc
        if resp.status_code == 404:
            raise BackendError(f"ray has no {path}: {_error_text(resp)}")
        if resp.status_code >= 400:
            raise BackendError(f"ray {path}: HTTP {resp.status_code}: {_error_text(resp)}")
        data = resp.json()
        return data if isinstance(data, dict) else {}

    def _job(self, handle: Handle) -> dict[str, Any]:
        return self._get(f"/api/jobs/{handle.id}")

    def _model(self, total: Mapping[str, Any]) -> str:
        if self._settings.gpu_model:
            return self._settings.gpu_model
        for key in total:
            if key.startswith("accelerator_type:"):
                return key.split(":", 1)[1]
        return self._settings.gpu_resource if self._custom else "unknown"

    def _free(self, resource: str) -> int | None:
        """Free units of ``resource`` across the cluster, or None when Ray does not say."""
        try:
            status = self._get("/api/cluster_status")
        except BackendError:
            return None
        usage = (
            status.get("data", {})
            .get("clusterStatus", {})
            .get("loadMetricsReport", {})
            .get("usage", {})
        )
        used_total = usage.get(resource)
        if not used_total:
            return None
        used, total = used_total
        return int(total - used)


def _error_text(resp: httpx.Response) -> str:
    """The dashboard's error; for a Python traceback, the innermost exception line."""
    lines = [line.strip() for line in resp.text.splitlines() if line.strip() not in ("", ".")]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception): ", line):
            return line[:500]
    return lines[-1][:500] if lines else f"HTTP {resp.status_code}"


def ray_backend(config: Mapping[str, object]) -> RayBackend:
    """A ``RayBackend`` from its configuration mapping (``RaySettings`` fields)."""
    settings = parse_settings(RaySettings, config, "ray backend")
    return RayBackend(settings)
