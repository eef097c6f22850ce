"""Reading Slurm's command output (22.05 formats). Pure: text in, values out.

- ``scontrol -o show job -d ID``: one line of ``Key=Value`` words; ``JOB_GRES=gpu:h100:2``
  names the GPUs allocated (kept after the job ends), ``GRES=gpu:h100:2(IDX:0-1)`` which.
- ``scontrol -o show node -d``: one line per node, ``Gres=gpu:h100:8(S:0)``,
  ``GresUsed=gpu:h100:5(IDX:0-4)``, ``State=MIXED+DRAIN``.
- ``sacct -c -P -n -o JobID,State,ExitCode,Start,End``: the jobcomp/filetxt record, what is
  left once the controller has forgotten a job (after ``MinJobAge``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from suanli.agent.backend import JobState

__all__ = [
    "GresEntry",
    "NodeGpus",
    "SlurmJob",
    "expand_indices",
    "job_state",
    "parse_exit_code",
    "parse_gres",
    "parse_jobcomp",
    "parse_key_values",
    "parse_nodes",
    "parse_scontrol_job",
    "parse_time",
]

_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,  # main process ended, epilog running: GPUs still held
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "CANCELLED": JobState.CANCELLED,
}


def job_state(slurm_state: str) -> JobState:
    """Our state for a Slurm job state; every other end (FAILED, TIMEOUT, NODE_FAIL,
    OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE) is a failure. ``CANCELLED by 0`` too."""
    word = slurm_state.split()[0].split("+")[0].upper() if slurm_state.strip() else ""
    return _STATES.get(word, JobState.FAILED)


def parse_key_values(line: str) -> dict[str, str]:
    """``Key=Value`` words of a one-line scontrol record. A repeated key keeps all values,
    joined by spaces (``GRES=`` appears once per node)."""
    out: dict[str, str] = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if not sep:
            continue
        if key not in out:
            out[key] = value
        elif value:
            out[key] = f"{out[key]} {value}".strip()
    return out


def parse_exit_code(text: str) -> int | None:
    """``"3:0"`` → 3; ``"0:15"`` (killed by signal 15) → 143, as a shell reports it."""
    code, _, sig = text.partition(":")
    if not code.isdigit():
        return None
    if sig.isdigit() and int(sig):
        return 128 + int(sig)
    return int(code)


def parse_time(text: str) -> float | None:
    """A Slurm timestamp (local time, ``2026-11-29T15:25:00``) as Unix seconds; None for
    ``Unknown``/``None``/empty."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class GresEntry:
    name: str  # "gpu"
    type: str | None  # "h100", None when the GRES has no type
    count: int
    indices: tuple[int, ...]  # from "(IDX:0-3,5)"; empty when not given


_GRES = re.compile(r"^(?P<name>[^:()]+)(?::(?P<type>[^:()]+))?:(?P<count>\d+)(?P<extra>\(.*\))?$")


def parse_gres(text: str) -> list[GresEntry]:
    """``gpu:h100:8(S:0-1),gpu:a100:2`` → entries. ``(null)``, ``N/A`` and empty → []."""
    entries: list[GresEntry] = []
    for part in _split_top_level(text):
        m = _GRES.match(part.strip())
        if not m:
            continue
        extra = m.group("extra") or ""
        idx = re.search(r"IDX:([^)]*)", extra)
        entries.append(
            GresEntry(
                name=m.group("name"),
                type=m.group("type"),
                count=int(m.group("count")),
                indices=expand_indices(idx.group(1)) if idx else (),
            )
        )
    return entries


def expand_indices(text: str) -> tuple[int, ...]:
    """``0-2,5`` → (0, 1, 2, 5); ``N/A`` → ()."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """What the backend needs from a Slurm job record."""

    job_id: str
    slurm_state: str
    reason: str
    exit_code: int | None
    start_s: float | None
    end_s: float | None
    gpus: int | None  # None: the record does not say
    gpu_ids: tuple[str, ...]
    stdout: str | None
    stderr: str | None


def _gpu_total(entries: list[GresEntry]) -> int:
    return sum(e.count for e in entries if e.name == "gpu")


def parse_scontrol_job(line: str) -> SlurmJob:
    """A job from ``scontrol -o show job -d ID``."""
    kv = parse_key_values(line)
    state = kv.get("JobState", "")
    running = job_state(state) is not JobState.PENDING
    alloc = parse_gres(kv.get("JOB_GRES", "").replace(" ", ","))
    bound = [e for e in parse_gres(kv.get("GRES", "").replace(" ", ",")) if e.name == "gpu"]
    # JOB_GRES is the job's gres_total, summed over its nodes; a pending job has none yet.
    gpus = _gpu_total(alloc) if alloc else (0 if running else None)
    return SlurmJob(
        job_id=kv.get("JobId", ""),
        slurm_state=state,
        reason=kv.get("Reason", ""),
        exit_code=parse_exit_code(kv.get("ExitCode", "")) if job_state(state).terminal else None,
        start_s=parse_time(kv.get("StartTime", "")) if running else None,
        end_s=parse_time(kv.get("EndTime", "")) if job_state(state).terminal else None,
        gpus=gpus,
        gpu_ids=tuple(str(i) for e in bound for i in e.indices),
        stdout=kv.get("StdOut"),
        stderr=kv.get("StdErr"),
    )


def parse_jobcomp(text: str, job_id: str) -> SlurmJob | None:
    """The job from ``sacct -c -P -n -o JobID,State,ExitCode,Start,End`` output; the
    last record wins (a requeued job is logged once per run). None when absent."""
    found: SlurmJob | None = None
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 5 or fields[0] != job_id:
            continue
        found = SlurmJob(
            job_id=job_id,
            slurm_state=fields[1],
            reason="from the job completion log",
            exit_code=parse_exit_code(fields[2]),
            start_s=parse_time(fields[3]),
            end_s=parse_time(fields[4]),
            gpus=None,
            gpu_ids=(),
            stdout=None,
            stderr=None,
        )
    return found


@dataclass(frozen=True, slots=True)
class NodeGpus:
    node: str
    partitions: tuple[str, ...]
    state: str
    gpus: list[GresEntry]
    used: list[GresEntry]

    def used_of(self, gres_type: str | None) -> int:
        """GPUs of ``gres_type`` in use on this node."""
        return sum(e.count for e in self.used if e.name == "gpu" and e.type == gres_type)

    @property
    def usable(self) -> bool:
        """Whether new work can start on it (not down, drained, failing or powered off)."""
        bad = {
            "DOWN",
            "DRAIN",
            "DRAINED",
            "DRAINING",
            "FAIL",
            "FAILING",
            "INVAL",
            "NOT_RESPONDING",
            "POWERED_DOWN",
            "POWERING_DOWN",
            "MAINT",
            "REBOOT_ISSUED",
        }
        flags = {f.rstrip("*~#!%$@^-") for f in self.state.upper().split("+")}
        return not flags & bad and not self.state.endswith("*")


def parse_nodes(text: str) -> list[NodeGpus]:
    """Nodes with GPU GRES from ``scontrol -o show node -d``."""
    nodes: list[NodeGpus] = []
    for line in text.splitlines():
        kv = parse_key_values(line)
        if "NodeName" not in kv:
            continue
        gpus = [e for e in parse_gres(kv.get("Gres", "")) if e.name == "gpu"]
        if not gpus:
            continue
        nodes.append(
            NodeGpus(
                node=kv["NodeName"],
                partitions=tuple(p for p in kv.get("Partitions", "").split(",") if p),
                state=kv.get("State", ""),
                gpus=gpus,
                used=parse_gres(kv.get("GresUsed", "")),
            )
        )
    return nodes
