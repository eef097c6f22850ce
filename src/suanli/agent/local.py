"""The ``local`` backend: work as processes on this host, each in its own sandbox.

Each job runs confined (``sandbox``: bubblewrap, its own unprivileged user, resource
limits; ``--unsafe-no-sandbox`` turns that off), in its own session and process group, in
its own working directory, with its environment (``jobenv``) and ``CUDA_VISIBLE_DEVICES``
set to the devices it was given from the host's inventory; stdout and stderr go to files
in its run folder, outside its view. A watcher thread per job records the exit the moment
it happens, then stops anything the job left behind before giving its GPUs back, so usage
is (end − start) × GPUs on the agent's clock. Cancel TERMs the group and KILLs what is
left after the grace period (the sandbox's pid namespace takes every process with it).
Work asking for more GPUs than are free waits; queued work starts in submission order as
devices free up (a small job may pass a big one that does not fit yet).

Jobs die with the agent: sandboxes are started with ``--die-with-parent`` from one
long-lived thread (``Spawner``), so an agent killed by SIGKILL leaves no work running
unmetered while the exchange places it again elsewhere.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from suanli.agent._proc import Spawner, stop_group
from suanli.agent._settings import parse_settings
from suanli.agent.backend import (
    BackendError,
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
from suanli.agent.discovery import discover_host_gpus
from suanli.agent.inventory import DeviceAllocator, Inventory
from suanli.agent.jobenv import JobPaths, job_paths, log_tail, passed_env, suanli_env
from suanli.agent.sandbox import Confinement, Sandbox, SandboxSettings
from suanli.domain import Fabric

__all__ = ["LocalBackend", "LocalSettings", "local_backend"]

NAME = "local"


class LocalSettings(BaseModel):
    """``runs_dir``: where run folders go. ``inventory``: the YAML file used when NVML is
    not there. ``stop_grace_s``: overrides every work's own grace (None: the work's).
    ``sandbox``: how work is confined (``sandbox.SandboxSettings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs_dir: Path
    inventory: Path | None = None
    fabric: Fabric = Fabric.ETHERNET
    stop_grace_s: float | None = Field(default=None, ge=0)
    sandbox: SandboxSettings = SandboxSettings()


@dataclass
class _Job:
    handle: Handle
    work: WorkSpec
    paths: JobPaths
    state: JobState = JobState.PENDING
    reason: str = "queued"
    exit_code: int | None = None
    pool: str | None = None
    devices: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    slot: int | None = None  # the sandbox user slot it holds while it runs
    started_at_s: float | None = None
    started_mono_s: float = 0.0
    held_s: float | None = None  # set when it ends; measured on the monotonic clock
    cancel_requested: bool = False
    watcher: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class LocalBackend:
    """Runs work as local process groups on devices from ``inventory``."""

    def __init__(
        self,
        settings: LocalSettings,
        inventory: Inventory,
        *,
        discovery_limits: tuple[Limitation, ...] = (),
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._inventory = inventory
        self._discovery_limits = discovery_limits
        self._now = now
        self._monotonic = monotonic
        self._base_env = passed_env(base_env)
        self._lock = threading.Lock()
        self._devices = DeviceAllocator(inventory)
        self._jobs: dict[str, _Job] = {}
        self._queue: list[_Job] = []
        self.sandbox = Sandbox(settings.sandbox)
        self._spawner = Spawner()
        self._slots: set[int] = set()

    @property
    def name(self) -> str:
        return NAME

    def limitations(self) -> tuple[Limitation, ...]:
        confined = self.sandbox.enabled
        return (
            *self._discovery_limits,
            *self.sandbox.limitations(),
            Limitation(Feature.MULTI_NODE, "runs on this one host: a job's GPUs are all here"),
            Limitation(
                Feature.PROCESS_TRACKING,
                "a job is its sandbox's pid namespace: cancel reaches every process in it"
                if confined
                else "a job is its process group: a process that leaves it (setsid, a "
                "daemon) escapes cancel",
            ),
            Limitation(
                Feature.AGENT_RESTART,
                "jobs die with the agent (they are tracked in its memory): after a restart "
                "their work is placed again and resumes from its checkpoints"
                if confined
                else "jobs are tracked in the agent's memory: a restarted agent finds its "
                "jobs' processes by their environment and stops them",
            ),
            Limitation(
                Feature.USAGE,
                "usage is wall time × GPUs given, on the agent's clock, not device activity",
            ),
        )

    def discover(self) -> Capacity:
        with self._lock:
            pools = tuple(
                PoolCapacity(
                    name=p.name,
                    gpu_model=p.gpu_model,
                    gpu_count=p.gpu_count,
                    gpus_per_node=p.gpus_per_node,
                    fabric=p.fabric,
                    gpus_free=self._devices.free(p.name),
                    simulated=p.simulated,
                )
                for p in self._inventory.pools
            )
        return Capacity(backend=NAME, pools=pools, source=self._inventory.source)

    def submit(self, work: WorkSpec) -> Handle:
        if work.nodes > 1:
            raise SubmitRefused(
                f"work {work.id}: the local backend runs on one host, not {work.nodes} nodes"
            )
        paths = job_paths(self._settings.runs_dir, work)
        handle = Handle(
            backend=NAME,
            id=work.job_name,
            work_id=work.id,
            attempt=work.attempt,
            gpus=work.gpus,
            run_dir=paths.run_dir,
        )
        with self._lock:
            if work.gpus and not self._devices.fitting_pools(work.gpus, work.gpu_model):
                model = work.gpu_model or "any model"
                raise SubmitRefused(
                    f"work {work.id} needs {work.gpus} GPUs ({model}) in one pool; this host "
                    f"has {[(p.name, p.gpu_model, p.gpu_count) for p in self._inventory.pools]}"
                )
            if handle.id in self._jobs:
                raise SubmitRefused(f"{handle.id} was already submitted here")
            # The run folder holds the logs: the agent's, never in the job's view.
            paths.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            paths.checkpoint_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            job = _Job(handle=handle, work=work, paths=paths)
            self._jobs[handle.id] = job
            self._queue.append(job)
            self._start_queued()
        return handle

    def status(self, handle: Handle) -> JobStatus:
        with self._lock:
            job = self._job(handle)
            state, exit_code, reason = job.state, job.exit_code, job.reason
            gpu_ids = tuple(str(d) for d in job.devices)
        return JobStatus(
            state=state,
            exit_code=exit_code,
            reason=reason,
            log_tail=log_tail((job.paths.stdout, job.paths.stderr)),
            gpu_ids=gpu_ids,
        )

    def cancel(self, handle: Handle) -> None:
        with self._lock:
            job = self._job(handle)
            if job.state.terminal:
                return
            job.cancel_requested = True
            if job.state is JobState.PENDING:
                self._queue.remove(job)
                job.state, job.reason = JobState.CANCELLED, "cancelled before it started"
                job.done.set()
                return
            assert job.proc is not None
            pgid = job.proc.pid
        grace_s = self._settings.stop_grace_s
        if grace_s is None:
            grace_s = job.work.resume.stop_grace_s
        stop_group(pgid, grace_s)
        # The watcher records the end and gives the GPUs back; wait so callers see it.
        job.done.wait(timeout=grace_s + 10.0)

    def usage(self, handle: Handle) -> Usage:
        with self._lock:
            job = self._job(handle)
            start, held_s, gpus = job.started_at_s, job.held_s, len(job.devices)
            running_s = self._monotonic() - job.started_mono_s
        if start is None:
            return Usage(0.0, gpus, None, None, source="local: never started")
        # Durations on the monotonic clock: a wall-clock step must not change a bill.
        end = None if held_s is None else start + held_s
        held = running_s if held_s is None else held_s
        return Usage(max(0.0, held) * gpus, gpus, start, end, source="local: agent clock")

    def close(self) -> None:
        """Nothing to release; running jobs go on until they end or the agent dies."""

    # --- internals (called with the lock held unless said otherwise)

    def _job(self, handle: Handle) -> _Job:
        job = self._jobs.get(handle.id)
        if job is None:
            raise BackendError(
                f"the local backend has no job {handle.id} (jobs are kept in "
                "the agent's memory and do not survive its restart)"
            )
        return job

    def _start_queued(self) -> None:
        for job in list(self._queue):
            taken = (
                (None, ())
                if job.work.gpus == 0
                else self._devices.take(job.work.gpus, job.work.gpu_model)
            )
            if taken is None:
                job.reason = f"waiting for {job.work.gpus} free GPUs"
                continue
            self._queue.remove(job)
            job.pool, job.devices = taken
            self._launch(job)

    def _launch(self, job: _Job) -> None:
        work = job.work
        env = {
            **self._base_env,
            **work.env,
            **suanli_env(work, NAME, job.paths.checkpoint_dir),
            # Empty for GPU-less work: it must not see the devices other jobs were given.
            "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in job.devices),
            # NVML numbers devices in PCI bus order; make CUDA agree.
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        }
        argv = (
            ["/bin/sh", "-c", work.command] if isinstance(work.command, str) else list(work.command)
        )
        try:
            box = self._confine(job)
            env = self.sandbox.environment(env, box)
            command = self.sandbox.command(argv, box)
            job.proc = self._spawner.start(lambda: self._popen(job, command, env))
        except (OSError, BackendError) as exc:
            job.state, job.exit_code = JobState.FAILED, 127
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            job.reason = f"could not start {argv[0]!r}: {why}"
            self._give_back(job)
            job.done.set()
            return
        job.started_at_s, job.started_mono_s = self._now(), self._monotonic()
        job.state, job.reason = JobState.RUNNING, "running"
        job.watcher = threading.Thread(
            target=self._watch, args=(job,), name=f"suanli-local-{job.handle.id}", daemon=True
        )
        job.watcher.start()

    def _confine(self, job: _Job) -> Confinement:
        """The job's sandbox: a free user slot, its folders made and given to that user."""
        job.slot = min(set(range(len(self._slots) + 1)) - self._slots)
        self._slots.add(job.slot)
        box = Confinement(
            workdir=job.paths.working_dir,
            writable=(job.paths.working_dir, job.paths.checkpoint_dir),
            uid=self.sandbox.uid(job.slot),
            memory_mb=self.sandbox.memory_mb(job.work.gpus, self._host_gpus()),
        )
        self.sandbox.prepare(box)
        return box

    def _popen(self, job: _Job, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with job.paths.stdout.open("ab") as out, job.paths.stderr.open("ab") as err:
            return subprocess.Popen(
                command,
                cwd=job.paths.working_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def _host_gpus(self) -> int:
        return sum(p.gpu_count for p in self._inventory.pools)

    def _watch(self, job: _Job) -> None:
        """Thread body, without the lock: wait for the leader, clear its group, settle."""
        assert job.proc is not None
        rc = job.proc.wait()
        # Background processes the job left behind still hold its GPUs: stop them first.
        stop_group(job.proc.pid, grace_s=1.0)
        with self._lock:
            job.held_s = self._monotonic() - job.started_mono_s
            if rc > 128 and self.sandbox.enabled:
                rc = 128 - rc  # bubblewrap exits 128 + N for a command killed by signal N
            job.exit_code = rc if rc >= 0 else 128 - rc
            if job.cancel_requested:
                job.state, job.reason = JobState.CANCELLED, "cancelled"
            elif rc == 0:
                job.state, job.reason = JobState.SUCCEEDED, "exited 0"
            else:
                job.state = JobState.FAILED
                job.reason = f"exited {rc}" if rc > 0 else f"killed by signal {-rc}"
            self._give_back(job)
            self._start_queued()
        job.done.set()

    def _give_back(self, job: _Job) -> None:
        if job.pool is not None:
            self._devices.give_back(job.pool, job.devices)
        if job.slot is not None:
            self._slots.discard(job.slot)
            job.slot = None


def local_backend(config: Mapping[str, object]) -> LocalBackend:
    """A ``LocalBackend`` from its configuration mapping (``LocalSettings`` fields); finds
    the host's GPUs with NVML, else from the inventory file. ``SandboxUnavailable`` (how
    to fix it) when work cannot be sandboxed here and the sandbox is not turned off."""
    settings = parse_settings(LocalSettings, config, "local backend")
    inventory, limits = discover_host_gpus(settings.inventory, settings.fabric)
    backend = LocalBackend(settings, inventory, discovery_limits=limits)
    backend.sandbox.check()
    return backend
