"""The ``slurm`` backend: work as Slurm batch jobs, through the Slurm commands.

- submit: a batch script in the job's run folder (exports, ``cd``, ``exec`` the command),
  ``sbatch --parsable --export=NONE --gres=gpu[:type]:N --nodes=K``; Slurm binds the GPUs
  (``CUDA_VISIBLE_DEVICES``) from the GRES it allocates.
- status / usage: ``scontrol -o show job -d``, the controller's own record (state, exit
  code, start and end, the GPUs allocated and their indices) while it keeps the job
  (``MinJobAge``); after that ``sacct -c``, the job completion log (jobcomp/filetxt).
- cancel: ``scancel``; the cluster's ``KillWait`` is the grace between TERM and KILL.
- discover: ``scontrol -o show node -d``: GPU GRES per node, used and free.

Every command runs with ``SLURM_CONF`` from the settings (if given), through an injected
``run`` function so the parsing can be tested without a cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from suanli.agent._settings import parse_settings
from suanli.agent._slurm_cli import UNREACHABLE, CommandResult, Runner, batch_script, run_command
from suanli.agent._slurm_parse import (
    NodeGpus,
    SlurmJob,
    job_state,
    parse_jobcomp,
    parse_nodes,
    parse_scontrol_job,
)
from suanli.agent.backend import (
    BackendError,
    BackendUnavailable,
    Capacity,
    Feature,
    Handle,
    JobStatus,
    Limitation,
    PoolCapacity,
    SubmitRefused,
    Usage,
    WorkSpec,
)
from suanli.agent.discovery import canonical_gpu_model
from suanli.agent.jobenv import job_paths, log_tail
from suanli.domain import Fabric

__all__ = ["CommandResult", "SlurmBackend", "SlurmSettings", "slurm_backend"]

NAME = "slurm"


class SlurmSettings(BaseModel):
    """``runs_dir`` must be on a filesystem the compute nodes share (scripts, logs, default
    working and checkpoint dirs go there). ``gpu_models`` maps GRES types to catalogue
    names where the catalogue does not know the type (``{"h100nvl": "H100"}``).
    ``simulated``: the GRES devices are fakes (tests, demos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs_dir: Path
    slurm_conf: Path | None = None
    bin_dir: Path | None = None
    partition: str | None = None
    gpu_models: dict[str, str] = Field(default_factory=dict)
    fabric: Fabric = Fabric.ETHERNET
    simulated: bool = False
    command_timeout_s: float = Field(default=30.0, gt=0)


class SlurmBackend:
    """Runs work as Slurm batch jobs (see the module docstring)."""

    def __init__(
        self,
        settings: SlurmSettings,
        *,
        run: Runner = run_command,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._run_fn = run
        self._now = now
        env = dict(os.environ)
        if settings.slurm_conf is not None:
            env["SLURM_CONF"] = str(settings.slurm_conf)
        self._env = env
        self._config: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return NAME

    # --- the interface

    def limitations(self) -> tuple[Limitation, ...]:
        cfg = self._cluster_config()
        limits = [
            Limitation(
                Feature.USAGE,
                "usage = (end − start) × GPUs allocated from the controller's job record, in "
                f"whole seconds; after MinJobAge ({cfg.get('MinJobAge', '?')}) the job "
                f"completion log ({cfg.get('JobCompType', '?')}) gives the times and the GPU "
                "count is the one asked for (it records no GRES without slurmdbd)",
            ),
            Limitation(
                Feature.STOP_GRACE,
                f"TERM to KILL is the cluster's KillWait ({cfg.get('KillWait', '?')}), not "
                "the work's stop_grace_s",
            ),
            Limitation(
                Feature.FABRIC,
                "Slurm does not describe the network: fabric is "
                f"configured ({self._settings.fabric.value})",
            ),
            Limitation(
                Feature.FILES,
                f"run folders go under {self._settings.runs_dir}, which "
                "must be shared with the compute nodes",
            ),
        ]
        energy = cfg.get("AcctGatherEnergyType", "acct_gather_energy/none")
        if energy.endswith("/none"):
            limits.append(
                Limitation(Feature.ENERGY, f"no energy accounting (AcctGatherEnergyType={energy})")
            )
        task = cfg.get("TaskPlugin", "")
        if "task/cgroup" not in task:
            limits.append(
                Limitation(
                    Feature.GPU_BINDING,
                    f"TaskPlugin={task or '?'}: CUDA_VISIBLE_DEVICES is set from the GRES, but "
                    "devices are not fenced (no cgroup ConstrainDevices)",
                )
            )
        proctrack = cfg.get("ProctrackType", "")
        if "proctrack/cgroup" not in proctrack:
            limits.append(
                Limitation(
                    Feature.PROCESS_TRACKING,
                    f"ProctrackType={proctrack or '?'}: processes that leave the job's process "
                    "group escape cancel",
                )
            )
        if self._settings.simulated:
            limits.append(
                Limitation(
                    Feature.SIMULATED_GPUS, "GRES GPUs are fake devices declared in gres.conf"
                )
            )
        return tuple(limits)

    def discover(self) -> Capacity:
        nodes = self._nodes()
        groups: dict[tuple[str | None, int], list[tuple[NodeGpus, int]]] = {}
        for node in nodes:
            for entry in node.gpus:
                groups.setdefault((entry.type, entry.count), []).append(
                    (node, entry.count - node.used_of(entry.type) if node.usable else 0)
                )
        sizes: dict[str | None, int] = {}
        for gres_type, _ in groups:
            sizes[gres_type] = sizes.get(gres_type, 0) + 1
        pools = []
        for (gres_type, per_node), members in sorted(groups.items(), key=lambda g: str(g[0])):
            name = f"slurm-{gres_type or 'gpu'}"
            if sizes[gres_type] > 1:
                name += f"-{per_node}x"
            pools.append(
                PoolCapacity(
                    name=name,
                    gpu_model=self._model_of(gres_type),
                    gpu_count=per_node * len(members),
                    gpus_per_node=per_node,
                    fabric=self._settings.fabric,
                    gpus_free=sum(max(0, free) for _, free in members),
                    simulated=self._settings.simulated,
                )
            )
        return Capacity(backend=NAME, pools=tuple(pools), source="scontrol show node")

    def submit(self, work: WorkSpec) -> Handle:
        paths = job_paths(self._settings.runs_dir, work)
        for d in (paths.run_dir, paths.working_dir, paths.checkpoint_dir):
            d.mkdir(parents=True, exist_ok=True)
        script = paths.run_dir / "job.sh"
        script.write_text(batch_script(work, NAME, paths.working_dir, paths.checkpoint_dir))
        argv = [
            "sbatch",
            "--parsable",
            "--export=NONE",
            f"--job-name={work.job_name}",
            f"--chdir={paths.run_dir}",
            f"--output={paths.stdout}",
            f"--error={paths.stderr}",
            f"--nodes={work.nodes}",
        ]
        if work.gpus:
            gres_type = self._gres_type(work.gpu_model)
            per_node = work.gpus // work.nodes
            argv.append(
                f"--gres=gpu:{gres_type}:{per_node}" if gres_type else f"--gres=gpu:{per_node}"
            )
        if self._settings.partition:
            argv.append(f"--partition={self._settings.partition}")
        argv.append(str(script))
        done = self._run(argv)
        if done.returncode != 0:
            raise SubmitRefused(f"sbatch refused {work.job_name}: {done.stderr.strip()}")
        job_id = done.stdout.strip().split(";")[0]
        return Handle(
            backend=NAME,
            id=job_id,
            work_id=work.id,
            attempt=work.attempt,
            gpus=work.gpus,
            run_dir=paths.run_dir,
        )

    def status(self, handle: Handle) -> JobStatus:
        job, _ = self._job(handle)
        state = job_state(job.slurm_state)
        reason = (
            job.slurm_state if job.reason in ("", "None") else (f"{job.slurm_state}: {job.reason}")
        )
        tail = ""
        if handle.run_dir is not None:
            tail = log_tail((handle.run_dir / "stdout.log", handle.run_dir / "stderr.log"))
        return JobStatus(
            state=state,
            exit_code=job.exit_code if state.terminal else None,
            reason=reason,
            log_tail=tail,
            gpu_ids=job.gpu_ids,
        )

    def cancel(self, handle: Handle) -> None:
        """Asks Slurm to cancel; returns once the controller has accepted it (the processes
        go within KillWait; ``status`` says when the job has ended)."""
        done = self._run(["scancel", handle.id])
        # A finished job is left as it is, whether the controller still knows it or not.
        finished = ("already completing or completed", "Invalid job id")
        if done.returncode != 0 and not any(m in done.stderr for m in finished):
            raise BackendError(f"scancel {handle.id}: {done.stderr.strip()}")

    def usage(self, handle: Handle) -> Usage:
        job, source = self._job(handle)
        gpus = job.gpus if job.gpus is not None else handle.gpus
        if job.start_s is None:
            return Usage(0.0, gpus, None, None, source=source)
        end = job.end_s if job.end_s is not None else self._now()
        return Usage(max(0.0, end - job.start_s) * gpus, gpus, job.start_s, job.end_s, source)

    def close(self) -> None:
        """Nothing held between calls."""

    # --- internals

    def _run(self, argv: list[str]) -> CommandResult:
        if self._settings.bin_dir is not None:
            argv = [str(self._settings.bin_dir / argv[0]), *argv[1:]]
        done = self._run_fn(argv, self._env, self._settings.command_timeout_s)
        if done.returncode != 0 and any(m in done.stderr for m in UNREACHABLE):
            raise BackendUnavailable(f"slurm is not reachable: {done.stderr.strip()}")
        return done

    def _job(self, handle: Handle) -> tuple[SlurmJob, str]:
        done = self._run(["scontrol", "-o", "show", "job", "-d", handle.id])
        if done.returncode == 0 and done.stdout.strip():
            return parse_scontrol_job(done.stdout.strip().splitlines()[0]), (
                "slurm controller (scontrol), whole seconds"
            )
        if "Invalid job id" not in done.stderr:
            raise BackendError(f"scontrol show job {handle.id}: {done.stderr.strip()}")
        comp = self._run(
            ["sacct", "-c", "-P", "-n", "-o", "JobID,State,ExitCode,Start,End", "-j", handle.id]
        )
        job = parse_jobcomp(comp.stdout, handle.id) if comp.returncode == 0 else None
        if job is None:
            raise BackendError(
                f"slurm has no record of job {handle.id} (neither the "
                f"controller nor the job completion log): {comp.stderr.strip()}"
            )
        return job, "slurm job completion log (sacct -c), whole seconds; GPUs as submitted"

    def _nodes(self) -> list[NodeGpus]:
        done = self._run(["scontrol", "-o", "show", "node", "-d"])
        if done.returncode != 0:
            raise BackendError(f"scontrol show node: {done.stderr.strip()}")
        return parse_nodes(done.stdout)

    def _cluster_config(self) -> dict[str, str]:
        if self._config is None:
            done = self._run(["scontrol", "show", "config"])
            cfg: dict[str, str] = {}
            for line in done.stdout.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    cfg[key.strip()] = value.strip()
            self._config = cfg
        return self._config

    def _model_of(self, gres_type: str | None) -> str:
        if gres_type is None:
            return "unknown"
        return self._settings.gpu_models.get(gres_type) or canonical_gpu_model(gres_type)

    def _gres_type(self, gpu_model: str | None) -> str | None:
        """The GRES type to ask for ``gpu_model`` (None: any GPU)."""
        if gpu_model is None:
            return None
        types = {e.type for n in self._nodes() for e in n.gpus if e.type}
        for t in sorted(types):
            if self._model_of(t).lower() == gpu_model.lower() or t.lower() == gpu_model.lower():
                return t
        raise SubmitRefused(f"no Slurm GRES type is a {gpu_model}; types here: {sorted(types)}")


def slurm_backend(config: Mapping[str, object]) -> SlurmBackend:
    """A ``SlurmBackend`` from its configuration mapping (``SlurmSettings`` fields)."""
    settings = parse_settings(SlurmSettings, config, "slurm backend")
    return SlurmBackend(settings)
