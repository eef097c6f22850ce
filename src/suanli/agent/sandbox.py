"""Sandboxes for buyers' work on the ``local`` backend: bubblewrap, an unprivileged user,
resource limits.

A buyer's command is untrusted code on the seller's host — for ``suanli up``, the host of
the exchange itself. Each job runs inside `bubblewrap <https://github.com/containers/
bubblewrap>`_ (Debian ``bubblewrap``, the sandbox Flatpak uses), the way Slurm confines a
job to its own user and cgroup:

- **Files.** A fresh mount namespace whose root holds only the system, read-only
  (``/usr``, ``/bin``, ``/sbin``, ``/lib*``, ``/etc``, ``/opt``, plus ``ro_paths`` the
  seller adds, e.g. a Python or CUDA install), a minimal ``/dev`` with the host's NVIDIA
  device nodes, a ``/proc`` of its own, a private ``/tmp``, and the job's working and
  checkpoint directories — the only writable places. The exchange's data directory and
  database, the agent's journal and state, other jobs' folders, home directories and the
  CLI's login config are not in its view at all.
- **Identity.** An agent running as root starts each job as its own unprivileged user
  (uid = gid = ``uid_base`` + a slot free while the job runs; no supplementary groups, no
  capabilities, ``no_new_privs``), so its files are its own and the process limit counts
  its processes alone. An agent that is not root runs work under its own uid inside a
  user namespace (bubblewrap's unprivileged mode): the mount namespace still hides every
  file above, but the job's processes count against the agent user's limits.
- **Processes.** Own pid, IPC and UTS namespaces: a job sees and signals only its own
  processes, and when its sandbox ends the kernel kills every process left in it (no
  ``setsid`` escape). ``--die-with-parent``: when the agent dies — even by SIGKILL — the
  kernel kills its sandboxes at once, so no work runs on unmetered after its agent.
- **Limits** (``prlimit``, per process): heap and data memory (``RLIMIT_DATA``: CUDA's
  large address-space reservations are not counted, unlike ``RLIMIT_AS``), processes of
  the job's user, open files, CPU seconds, file size.

What it does not protect against, declared to sellers as limitations:

- the network is the host's: replicas must be reachable and jobs may fetch data, so a job
  can reach any service listening on the host, the exchange's API included (without a
  token it can do what any anonymous client can);
- memory is limited per process, not per job (no cgroups): a job may hold up to
  ``max_processes`` × the data limit;
- GPUs are assigned by ``CUDA_VISIBLE_DEVICES``, not fenced: every NVIDIA device node is
  visible;
- the kernel is shared (a kernel exploit escapes any namespace), and the disk holding the
  runs folder can be filled (the file-size limit caps one file, not the total).

``--unsafe-no-sandbox`` (``SandboxSettings.enabled = False``) runs work as plain process
groups with the agent's own rights; it is for single-user hosts, is logged loudly and is
shown to buyers and sellers as a limitation of the site.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

import suanli
from suanli.agent.backend import BackendError, Feature, Limitation

__all__ = [
    "SYSTEM_PATHS",
    "Confinement",
    "Sandbox",
    "SandboxLimits",
    "SandboxSettings",
    "SandboxUnavailable",
    "host_memory_mb",
]

# The host's system, shown read-only inside every sandbox (those that exist).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Where /etc/resolv.conf often points on systemd hosts.
_RESOLVER_PATHS = ("/run/systemd/resolve",)
_MIN_MEMORY_MB = 2048

FIX = (
    "install Debian's bubblewrap (`apt-get install bubblewrap`) and util-linux "
    "(setpriv, prlimit); an agent that is not root also needs unprivileged user "
    "namespaces (`sysctl kernel.unprivileged_userns_clone=1` on Debian, "
    "`user.max_user_namespaces` > 0). Or start the agent with --unsafe-no-sandbox to run "
    "buyers' work with the agent's own rights (single-user hosts only)"
)


class SandboxUnavailable(BackendError):
    """The sandbox cannot be set up here; the message says why and how to fix it."""


class SandboxLimits(BaseModel):
    """Per-process limits of a sandboxed job.

    ``memory_mb`` (``RLIMIT_DATA``; None: the job's share of host memory — RAM × its GPUs
    ÷ the host's GPUs, at least 2 GiB), ``max_processes`` (``RLIMIT_NPROC`` of the job's
    user), ``open_files``, ``cpu_hours`` (``RLIMIT_CPU``; None: unlimited), ``file_mb``
    (``RLIMIT_FSIZE``; None: unlimited).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int | None = Field(default=None, ge=16)
    max_processes: int = Field(default=512, ge=4, le=1_000_000)
    open_files: int = Field(default=4096, ge=16, le=1_048_576)
    cpu_hours: float | None = Field(default=168.0, gt=0)
    file_mb: int | None = Field(default=None, ge=1)


class SandboxSettings(BaseModel):
    """How the ``local`` backend confines work (see the module docstring).

    ``enabled`` False is ``--unsafe-no-sandbox``. ``uid_base``: jobs of a root agent run
    as uids ``uid_base`` … ``uid_base + uid_slots − 1`` (unused by any account on the
    host). ``ro_paths``: more host paths shown read-only (toolchains, models).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    uid_base: int = Field(default=990_000, ge=1000, le=2**31 - 70_000)
    uid_slots: int = Field(default=4096, ge=1, le=65_536)
    ro_paths: tuple[Path, ...] = ()
    limits: SandboxLimits = SandboxLimits()
    bwrap: str = "bwrap"


@dataclass(frozen=True, slots=True)
class Confinement:
    """One job's sandbox: who it runs as, where it may write, how much it may use."""

    workdir: Path
    writable: tuple[Path, ...]
    uid: int | None  # None: the agent's own (an agent that is not root)
    memory_mb: int


def host_memory_mb() -> int:
    """Physical memory of this host in MiB (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    except (ValueError, OSError):
        return 0


class Sandbox:
    """Builds the command line that runs a job confined, and checks it can be built here."""

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        geteuid: Callable[[], int] = os.geteuid,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.settings = settings
        self._root = geteuid() == 0
        self._which = which
        self._tools: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def per_job_users(self) -> bool:
        """Whether each job runs as its own unprivileged user (an agent running as root)."""
        return self.enabled and self._root

    def limitations(self) -> tuple[Limitation, ...]:
        if not self.enabled:
            return (
                Limitation(
                    Feature.SANDBOX,
                    "UNSAFE: started with --unsafe-no-sandbox: buyers' work runs unconfined "
                    "with the agent's own rights and can read and change whatever it can",
                ),
            )
        who = (
            "each job as its own unprivileged user"
            if self._root
            else "jobs under the agent's own user in a user namespace"
        )
        return (
            Limitation(
                Feature.SANDBOX,
                f"bubblewrap sandbox, {who}: read-only system, private /tmp and pid "
                "namespace; the host network is shared; memory is limited per process "
                "(RLIMIT_DATA), not per job",
            ),
        )

    def check(self) -> None:
        """Raise ``SandboxUnavailable`` (saying how to fix it) unless a sandboxed job can
        start here: the tools are installed and a probe sandbox runs."""
        if not self.enabled:
            return
        for tool in ("bwrap", "prlimit", *(("setpriv",) if self._root else ())):
            name = self.settings.bwrap if tool == "bwrap" else tool
            # util-linux lives in /usr/bin, which a service's PATH may lack.
            path = self._which(name) or (None if "/" in name else self._which(f"/usr/bin/{name}"))
            if path is None:
                raise SandboxUnavailable(f"cannot sandbox buyers' work: `{name}` not found; {FIX}")
            self._tools[tool] = path
        probe = Confinement(workdir=Path("/"), writable=(), uid=self._probe_uid(), memory_mb=256)
        try:
            done = subprocess.run(
                self.command(["/bin/true"], probe),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"cannot sandbox buyers' work: {exc}; {FIX}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()[-500:]
            raise SandboxUnavailable(
                f"cannot sandbox buyers' work: a probe sandbox failed "
                f"(exit {done.returncode}: {said or 'no message'}); {FIX}"
            )

    def uid(self, slot: int) -> int | None:
        """The user a job in ``slot`` runs as (None: the agent's own)."""
        if not self.per_job_users:
            return None
        if not 0 <= slot < self.settings.uid_slots:
            raise SandboxUnavailable(
                f"no free sandbox user: all {self.settings.uid_slots} uid slots are in use"
            )
        return self.settings.uid_base + slot

    def memory_mb(self, gpus: int, host_gpus: int) -> int:
        """The data limit of a job holding ``gpus`` of the host's ``host_gpus``."""
        if self.settings.limits.memory_mb is not None:
            return self.settings.limits.memory_mb
        share = max(gpus, 1) / max(host_gpus, 1)
        return max(_MIN_MEMORY_MB, int(host_memory_mb() * min(1.0, share)))

    def prepare(self, box: Confinement) -> None:
        """Create the writable folders and give them to the job's user (its files only:
        links are changed, never followed)."""
        for d in box.writable:
            d.mkdir(parents=True, exist_ok=True)
        if box.uid is None:
            return
        for d in box.writable:
            _chown_tree(d, box.uid)

    def environment(self, env: Mapping[str, str], box: Confinement) -> dict[str, str]:
        """A job's environment inside its sandbox: its own home and /tmp, nothing naming
        the agent's user (unchanged without the sandbox)."""
        if not self.enabled:
            return dict(env)
        drop = ("USER", "LOGNAME")
        return {
            **{k: v for k, v in env.items() if k not in drop},
            "HOME": str(box.workdir),
            "TMPDIR": "/tmp",
        }

    def command(self, argv: Sequence[str], box: Confinement) -> list[str]:
        """``argv`` wrapped: bubblewrap → (root: drop to the job's user) → limits → argv.
        Without the sandbox only the parent-death signal is added (the job leader dies
        with the agent; its children may not)."""
        if not self.enabled:
            return [*self._pdeath(), *argv]
        return [*self._bwrap(box), *self._drop(box), *self._limits(box), "--", *argv]

    # --- the parts of the command line

    def _bwrap(self, box: Confinement) -> list[str]:
        # Fresh /dev, /proc and a private, world-writable /tmp first: what is shown below
        # may live under /tmp (a checkout's virtual environment, the runs folder).
        args = [self._tools.get("bwrap", self.settings.bwrap)]
        args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]
        for system in SYSTEM_PATHS:
            args += _show(Path(system))
        for extra in (*self.settings.ro_paths, *_python_paths()):
            args += _show(extra, parents=True)
        for resolver in _RESOLVER_PATHS:
            args += ["--ro-bind-try", resolver, resolver]
        for dev in _nvidia_devices():
            args += ["--dev-bind", dev, dev]
        for d in box.writable:
            args += [*_parents(d), "--bind", str(d), str(d)]
        args += [
            "--chdir",
            str(box.workdir),
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "suanli-job",
            "--die-with-parent",
        ]
        if self._root:
            # Kept only long enough for setpriv to switch to the job's user.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user"]
        return [*args, "--"]

    def _drop(self, box: Confinement) -> list[str]:
        if box.uid is None:
            return []
        return [
            self._tools.get("setpriv", "setpriv"),
            f"--reuid={box.uid}",
            f"--regid={box.uid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]

    def _limits(self, box: Confinement) -> list[str]:
        lim = self.settings.limits
        out = [
            self._tools.get("prlimit", "prlimit"),
            _limit("data", box.memory_mb * 2**20),
            _limit("nproc", lim.max_processes),
            _limit("nofile", lim.open_files),
        ]
        if lim.cpu_hours is not None:
            out.append(_limit("cpu", round(lim.cpu_hours * 3600)))
        if lim.file_mb is not None:
            out.append(_limit("fsize", lim.file_mb * 2**20))
        return out

    def _pdeath(self) -> list[str]:
        setpriv = self._which("setpriv")
        return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []

    def _probe_uid(self) -> int | None:
        return self.settings.uid_base + self.settings.uid_slots - 1 if self._root else None


def _limit(name: str, value: int) -> str:
    return f"--{name}={value}:{value}"


def _show(path: Path, *, parents: bool = False) -> list[str]:
    """Arguments that show ``path`` read-only at the same place (links as links)."""
    if path.is_symlink():
        return ["--symlink", os.readlink(path), str(path)]
    if not path.exists():
        return []
    return [*(_parents(path) if parents else []), "--ro-bind", str(path), str(path)]


def _parents(path: Path) -> list[str]:
    """Traversable (0755) folders above ``path`` inside the sandbox: the host's may be
    private to their owner (``/root``), and the job's user must reach what is below."""
    out: list[str] = []
    for parent in reversed(path.parents[:-1]):
        out += ["--perms", "0755", "--dir", str(parent)]
    return out


def _python_paths() -> list[Path]:
    """The agent's own Python (installation and virtual environment) and the ``suanli``
    package itself (outside them when installed in editable mode): code, no secrets, so
    that work can run ``python`` — and the engines shipped with suanli, e.g. ``python -m
    suanli.engines.standin`` — where the host has no other."""
    seen: list[Path] = []
    package = Path(suanli.__file__).resolve().parent
    for p in (Path(sys.base_prefix), Path(sys.prefix), package):
        system = any(str(p).startswith(s) for s in SYSTEM_PATHS)
        if not system and not any(p.is_relative_to(q) for q in seen):
            seen.append(p)
    return seen


def _nvidia_devices() -> list[str]:
    try:
        return sorted(str(p) for p in Path("/dev").glob("nvidia*") if not p.is_dir())
    except OSError:
        return []


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
