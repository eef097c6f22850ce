"""What the tests need from the machine, in one place: one skip policy, the shared real
clusters, and waiting on conditions.

**One skip policy.** A test or fixture that needs something outside the venv — PostgreSQL,
Slurm, Ray, llama.cpp, bubblewrap, the public traces, a mount namespace, ``chattr`` — asks
for it with ``require("<resource>")`` (the ``require`` fixture) or declares it with
``@pytest.mark.requires("<resource>")``. Missing, it skips with the reason; under CI
(``CI=true``) it fails instead, so CI never passes by skipping. Fixtures start services;
they never install anything: that is ``scripts/ci-install.sh`` (which ``.ci/run`` calls).
A new resource is one entry in ``PROBES``: its name and a function that says why it is
missing, or ``None``.

**Tiers.** ``cluster`` marks tests that use a real cluster (added here to every test that
uses ``slurm_cluster`` or ``ray_cluster``); ``slow`` marks the long tiers (end to end, live
exchanges, fuzzing). ``make test`` runs everything, ``make test-fast`` ``-m "not slow and not
cluster"``.

**Clusters.** ``slurm_cluster``: munge + slurmctld + slurmd on loopback with 8 fake GPUs as
GRES (``scripts/slurm-local.sh``). ``ray_cluster``: a Ray head on loopback with 8 fake GPUs,
declared both as Ray GPUs and as the custom resource ``H100`` (``scripts/ray-local.sh``).
Both are session-scoped (shared by tests/agent and tests/e2e), on free ports, in their own
folders, and stopped at the end by TERMing what they started.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suanli.bench.api import PG_CANDIDATES

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
INSTALL = "scripts/ci-install.sh"
FAKE_GPUS = 8

# ----- the skip policy --------------------------------------------------------------------

SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
BWRAP = "/usr/bin/bwrap"


@functools.cache
def pg_admin_url() -> str | None:
    """The first PostgreSQL admin URL that answers (``SUANLI_TEST_PG_URL`` or the defaults)."""
    from suanli.bench.api import find_postgres

    return find_postgres(os.environ.get("SUANLI_TEST_PG_URL"))


def traces_dir() -> Path:
    """The public traces: ``SUANLI_TRACES_DIR``, else ``../shared/traces`` beside the repo."""
    env = os.environ.get("SUANLI_TRACES_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "traces"


def _postgresql() -> str | None:
    if pg_admin_url() is None:
        tried = os.environ.get("SUANLI_TEST_PG_URL") or " or ".join(PG_CANDIDATES)
        return f"no PostgreSQL answers at {tried} (trust auth, database test)"
    return None


def _slurm() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "a local Slurm needs Linux and root (munged, slurmd, mknod for fake GPUs)"
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    absent = [p for p in SLURM_PROGRAMS if shutil.which(p, path=path) is None]
    if absent:
        return f"Slurm is not installed (no {', '.join(absent)}); run {INSTALL} as root"
    return None


def _ray() -> str | None:
    if not (Path(sys.executable).parent / "ray").exists():
        return f"the `ray` extra is not installed in {sys.prefix}; run {INSTALL}"
    return None


def _llama() -> str | None:
    from suanli.engines.llama import llama_problem  # cached: one child process per session

    problem = llama_problem()
    return None if problem is None else f"{problem}; run {INSTALL} (the `serve` extra)"


@functools.cache
def _bwrap() -> str | None:
    if not Path(BWRAP).exists():
        return f"bubblewrap is not installed (no {BWRAP}); run {INSTALL} as root"
    argv = [BWRAP, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return f"{' '.join(argv)} did not finish in 30 s"
    if done.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {done.stderr.strip()[-500:]}"
    return None


@functools.cache
def _unshare() -> str | None:
    if shutil.which("unshare") is None:
        return "no `unshare` (util-linux)"
    done = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"`unshare -m` needs root in a Linux mount namespace: {done.stderr.strip()}"
    return None


def _chattr() -> str | None:
    if shutil.which("chattr") is None:
        return "no `chattr` (e2fsprogs) to make a folder immutable"
    return None


def _traces() -> str | None:
    d = traces_dir()
    if not d.is_dir():
        return f"no public traces at {d} (set SUANLI_TRACES_DIR to their folder)"
    return None


# Resource name -> why it is missing (None: it is there). Cheap checks; the costly ones cached.
PROBES: dict[str, Callable[[], str | None]] = {
    "postgresql": _postgresql,
    "slurm": _slurm,
    "ray": _ray,
    "llama": _llama,  # llama-cpp-python[server] (the `serve` extra): a real inference engine
    "bwrap": _bwrap,
    "traces": _traces,
    "unshare": _unshare,  # a private mount namespace (to mount a small tmpfs)
    "chattr": _chattr,  # an immutable folder: the only unwritable one for root
}


class Require:
    """``require(resource)``: return if ``resource`` is there; otherwise skip the test with
    the reason, or fail it under ``CI=true``. ``require(resource, problem)`` reports a
    resource the caller found broken (say, a cluster that did not start) the same way."""

    def __init__(self, probes: dict[str, Callable[[], str | None]]) -> None:
        self.probes = probes

    def __call__(self, resource: str, problem: str | None = None) -> None:
        if resource not in self.probes:  # a typo must not turn into a silent skip
            pytest.fail(f"unknown resource {resource!r}; known: {', '.join(self.probes)}")
        reason = problem or self.probes[resource]()
        if reason is None:
            return
        if os.environ.get("CI") == "true" and not _optional(resource):
            pytest.fail(f"CI=true, so {resource} must be here, but: {reason}", pytrace=False)
        pytest.skip(f"needs {resource}: {reason}")


def _optional(resource: str) -> bool:
    """The public traces are data that sits beside a checkout, never shipped or installed
    with it: a clone elsewhere skips their tests even under CI — unless
    ``SUANLI_TRACES_DIR`` says where they are, and then they must be there."""
    return resource == "traces" and "SUANLI_TRACES_DIR" not in os.environ


require = Require(PROBES)


@pytest.fixture(name="require", scope="session")
def require_fixture() -> Require:
    return require


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        for resource in mark.args:
            require(resource)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"slurm_cluster", "ray_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def pg_admin() -> str:
    """The PostgreSQL admin URL (``require("postgresql")``)."""
    require("postgresql")
    url = pg_admin_url()
    assert url is not None
    return url


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The public traces folder (``require("traces")``)."""
    require("traces")
    return traces_dir()


# ----- waiting on conditions -------------------------------------------------------------


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout_s, what)``: poll until true, else fail saying what."""

    def wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        pytest.fail(f"gave up after {timeout_s:g} s waiting for {what}")

    return wait


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@pytest.fixture(scope="session")
def alive() -> Callable[[int], bool]:
    """Whether ``pid`` is a live (non-zombie) process."""
    return _alive


@pytest.fixture(scope="session")
def processes_of() -> Callable[[str], list[int]]:
    """``processes_of(work_id)``: live host pids of a work's job — every process whose
    environment names it, its sandbox's included (pids inside a sandbox are its own)."""
    from suanli.bench._procscan import with_env

    return lambda work_id: with_env(f"SUANLI_WORK_ID={work_id}")


# ----- the real clusters -----------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _script(args: list[str], env: dict[str, str], timeout_s: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            ["bash", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"{' '.join(args)} timed out after {timeout_s:g} s"
    return done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _pids(*files: Path) -> list[int]:
    out = []
    for f in files:
        try:
            out.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            continue
    return out


def _kill_leftovers(pids: list[int], *, group: bool) -> None:
    """KILL what the stop script left running (it should be nothing): a session must not
    leave daemons behind, whatever went wrong in a graceful stop."""
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class SlurmCluster:
    dir: Path
    conf: Path


@dataclass(frozen=True)
class RayCluster:
    dir: Path
    address: str


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    require("slurm")
    script = str(SCRIPTS / "slurm-local.sh")
    d = Path(tempfile.mkdtemp(prefix="suanli-slurm-", dir="/tmp"))
    d.chmod(0o755)  # munged runs as the munge user and must reach its socket here
    ctld_port, d_port = _free_ports(2)
    env = {
        "SLURM_GPUS": str(FAKE_GPUS),
        "SLURM_CTLD_PORT": str(ctld_port),
        "SLURM_D_PORT": str(d_port),
    }
    ok, out = _script([script, "start", str(d)], env, timeout_s=120)
    try:
        if not ok:
            log = _tail(d / "slurmctld.log")
            require("slurm", f"Slurm did not start: {out}\nslurmctld.log: {log}")
        yield SlurmCluster(dir=d, conf=d / "slurm.conf")
    finally:
        pids = _pids(d / "slurmd.pid", d / "slurmctld.pid", d / "munge" / "munged.pid")
        _script([script, "stop", str(d)], {}, timeout_s=60)
        _kill_leftovers(pids, group=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    require("ray")
    script = str(SCRIPTS / "ray-local.sh")
    d = Path(tempfile.mkdtemp(prefix="suanli-ray-", dir="/tmp"))
    gcs, dash, client, agent = _free_ports(4)
    env = {
        "PYTHON": sys.executable,
        "RAY_GCS_PORT": str(gcs),
        "RAY_DASHBOARD_PORT": str(dash),
        "RAY_CLIENT_PORT": str(client),
        "RAY_AGENT_PORT": str(agent),
        "RAY_FAKE_GPUS": str(FAKE_GPUS),
        "RAY_GPU_RESOURCE": "H100",
    }
    ok, out = _script([script, "start", str(d)], env, timeout_s=180)
    try:
        if not ok:
            require("ray", f"the Ray head did not start: {out}\nhead.log: {_tail(d / 'head.log')}")
        yield RayCluster(dir=d, address=f"http://127.0.0.1:{dash}")
    finally:
        pids = _pids(d / "head.pid")
        _script([script, "stop", str(d)], env, timeout_s=60)
        _kill_leftovers(pids, group=True)  # the head leads its own process group
        shutil.rmtree(d, ignore_errors=True)
