"""The one interface every execution backend implements, and the values it speaks in.

A site agent runs placed work on the seller's own cluster engine through a ``Backend``::

    discover()          -> Capacity        pools: GPU model, count, GPUs per node, fabric, free
    submit(WorkSpec)    -> Handle          start (or queue) the work; the handle names it
    status(Handle)      -> JobStatus       pending | running | succeeded | failed | cancelled,
                                           exit code, the backend's reason, a log tail
    cancel(Handle)      -> None            stop the work and everything it started
    usage(Handle)       -> Usage           delivered GPU-seconds from the backend's own
                                           accounting, with start and end times
    limitations()       -> tuple[Limitation, ...]   what this backend cannot do, and why

What a backend cannot do is data (``Limitation``), shown to the seller unchanged. A job that
ends badly is a value (``JobState.FAILED`` with its exit code), not an exception; exceptions
are for a backend that cannot be reached (``BackendUnavailable``) or refuses the work
outright (``SubmitRefused``, e.g. more GPUs than the cluster has).

Every job sees: the GPUs it was given (``CUDA_VISIBLE_DEVICES`` or the backend's own
binding), its working directory as cwd, and ``SUANLI_*`` variables (``jobenv``) naming its
work id, attempt, checkpoint directory and resume contract.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from suanli.domain import Fabric
from suanli.errors import InvalidInput, SuanliError

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Capacity",
    "Feature",
    "Handle",
    "JobState",
    "JobStatus",
    "Limitation",
    "PoolCapacity",
    "ResumeContract",
    "ResumeMode",
    "SubmitRefused",
    "Usage",
    "WorkSpec",
]


class BackendError(SuanliError):
    """A backend could not do what was asked; the message says why, in its own words."""


class BackendUnavailable(BackendError):
    """The cluster engine cannot be reached (daemon down, dashboard not answering)."""


class SubmitRefused(BackendError):
    """The backend refused the work outright: it can never run there as asked."""


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Feature(StrEnum):
    """Things a backend may be unable to do; the vocabulary of ``Limitation``."""

    GPU_DISCOVERY = "gpu-discovery"  # finding the GPUs by itself
    GPU_BINDING = "gpu-binding"  # binding each job to its own devices
    SIMULATED_GPUS = "simulated-gpus"  # GPUs are declared, not real devices
    ENERGY = "energy"  # metering energy per job
    USAGE = "usage"  # exact delivered GPU-seconds
    MULTI_NODE = "multi-node"  # one job across several nodes
    STOP_GRACE = "stop-grace"  # per-job time between TERM and KILL
    PROCESS_TRACKING = "process-tracking"  # cancel reaching every process a job started
    FABRIC = "fabric"  # discovering the inter-node network
    AGENT_RESTART = "agent-restart"  # jobs outliving the agent process
    FILES = "files"  # working/checkpoint dirs and logs visible to the agent
    SANDBOX = "sandbox"  # confining buyers' work away from the host and other work


@dataclass(frozen=True, slots=True)
class Limitation:
    """Something a backend cannot do, and why, in words a seller can act on."""

    feature: Feature
    reason: str


class ResumeMode(StrEnum):
    RESTART = "restart"  # keeps no checkpoints: a re-run starts from scratch
    CHECKPOINT = "checkpoint"  # saves to SUANLI_CHECKPOINT_DIR and resumes from the newest


@dataclass(frozen=True, slots=True)
class ResumeContract:
    """What the work promises about stopping and starting again.

    ``checkpoint_every_s`` is how often it saves (None: it does not say).
    ``stop_grace_s`` is how long it needs between TERM and KILL to save a last checkpoint;
    backends that take the grace from the cluster's configuration declare it as a
    ``Feature.STOP_GRACE`` limitation.
    """

    mode: ResumeMode = ResumeMode.RESTART
    checkpoint_every_s: float | None = None
    stop_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.checkpoint_every_s is not None and self.checkpoint_every_s <= 0:
            raise InvalidInput(f"checkpoint_every_s must be > 0, got {self.checkpoint_every_s}")
        if self.stop_grace_s < 0:
            raise InvalidInput(f"stop_grace_s must be >= 0, got {self.stop_grace_s}")


# Env names go into shell scripts (Slurm's batch script): only plain variable names.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class WorkSpec:
    """One piece of placed work, as a backend runs it.

    ``command`` is an argv (run as is) or a shell string (run by ``/bin/sh -c``).
    ``working_dir`` / ``checkpoint_dir``: None gives each a folder under the backend's runs
    directory. ``gpu_model`` picks a pool where the backend has several (None: any).
    ``nodes`` spreads ``gpus`` evenly over that many nodes (a gang). ``attempt`` counts
    placements of the same work: after a failover it is 2, 3, … and names a new job.
    ``env`` is added to the job's environment; SUANLI_* names are reserved.
    """

    id: str
    command: tuple[str, ...] | str
    gpus: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: Path | None = None
    checkpoint_dir: Path | None = None
    resume: ResumeContract = field(default_factory=ResumeContract)
    gpu_model: str | None = None
    nodes: int = 1
    attempt: int = 1

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 64 or not set(self.id) <= _ID_CHARS:
            raise InvalidInput(
                f"work id {self.id!r} must be 1-64 characters of letters, digits, '.', '_', '-'"
            )
        if isinstance(self.command, str) and not self.command.strip():
            raise InvalidInput(f"work {self.id}: empty command")
        if not isinstance(self.command, str) and not self.command:
            raise InvalidInput(f"work {self.id}: empty argv")
        if self.gpus < 0 or self.nodes < 1 or self.attempt < 1:
            raise InvalidInput(
                f"work {self.id}: gpus >= 0, nodes >= 1, attempt >= 1 "
                f"(got {self.gpus}, {self.nodes}, {self.attempt})"
            )
        if self.gpus % self.nodes:
            raise InvalidInput(
                f"work {self.id}: {self.gpus} GPUs do not split evenly over {self.nodes} nodes"
            )
        bad_names = sorted(k for k in self.env if not _ENV_NAME.fullmatch(k))
        if bad_names:
            raise InvalidInput(f"work {self.id}: env names {bad_names} are not variable names")
        reserved = sorted(k for k in self.env if k.startswith("SUANLI_"))
        if reserved:
            raise InvalidInput(f"work {self.id}: env names {reserved} are reserved")

    @property
    def job_name(self) -> str:
        """The name the job carries in the backend: unique per work and attempt."""
        return f"suanli-{self.id}-{self.attempt}"


@dataclass(frozen=True, slots=True)
class Handle:
    """A submitted job: ``id`` is the backend's own job id.

    ``run_dir`` holds what the backend wrote for the job (script, stdout, stderr) where it
    has such a folder. ``gpus`` is what was asked, for accounting that does not record it.
    """

    backend: str
    id: str
    work_id: str
    attempt: int
    gpus: int
    run_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job is. ``reason`` is the backend's own word for it (e.g. Slurm's
    ``NonZeroExitCode``, Ray's message). ``exit_code`` is None until it ends; a job killed
    by signal N reports 128 + N, as a shell does. ``gpu_ids`` are the devices bound to it,
    where the backend tells."""

    state: JobState
    exit_code: int | None
    reason: str
    log_tail: str
    gpu_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """GPU time a job held, from the backend's own records.

    ``gpu_seconds`` = (``ended_at_s`` or now − ``started_at_s``) × ``gpus``; zero before it
    starts. Times are Unix seconds. ``source`` says which record the figures come from.
    """

    gpu_seconds: float
    gpus: int
    started_at_s: float | None
    ended_at_s: float | None
    source: str


@dataclass(frozen=True, slots=True)
class PoolCapacity:
    """GPUs of one model a backend can run work on.

    ``simulated``: the GPUs are declared, not real devices (tests, demos on GPU-less hosts).
    """

    name: str
    gpu_model: str
    gpu_count: int
    gpus_per_node: int
    fabric: Fabric
    gpus_free: int
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class Capacity:
    """What ``discover`` found, and where it looked (``source``)."""

    backend: str
    pools: tuple[PoolCapacity, ...]
    source: str

    @property
    def gpu_count(self) -> int:
        return sum(p.gpu_count for p in self.pools)


class Backend(Protocol):
    """An execution backend. Implementations: ``local``, ``slurm``, ``ray``."""

    @property
    def name(self) -> str: ...

    def limitations(self) -> tuple[Limitation, ...]:
        """What this backend cannot do here, with reasons (may depend on discovery)."""
        ...

    def discover(self) -> Capacity:
        """The pools this backend can run work on, with free GPUs now."""
        ...

    def submit(self, work: WorkSpec) -> Handle:
        """Start or queue ``work``; raises ``SubmitRefused`` if it can never run here."""
        ...

    def status(self, handle: Handle) -> JobStatus: ...

    def cancel(self, handle: Handle) -> None:
        """Stop the job and the processes it started; a finished job is left as it is."""
        ...

    def usage(self, handle: Handle) -> Usage: ...

    def close(self) -> None:
        """Release what the backend holds (HTTP clients); running jobs are not touched."""
        ...
