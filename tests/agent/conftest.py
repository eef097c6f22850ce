"""Real clusters for the backend tests, started from the project's own scripts.

``slurm_cluster``: munge + slurmctld + slurmd on loopback with 8 fake GPUs as GRES
(``scripts/slurm-local.sh``; Debian packages installed first if missing, which needs root).
``ray_cluster``: a Ray head on loopback with 8 fake GPUs, declared both as Ray GPUs and as
the custom resource ``H100`` (``scripts/ray-local.sh``; the ``ray`` extra installed into this
venv first if missing). Both are session-scoped, on free ports, in their own folders, and
stopped at the end by TERMing what they started.

A cluster that cannot start skips its tests with the reason, except under CI (``CI=true``),
where the tests must run: there it fails loudly instead.
"""

from __future__ import annotations

import contextlib
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
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
FAKE_GPUS = 8


def unavailable(reason: str) -> NoReturn:
    """Skip, or under CI fail: CI must really run the cluster tests."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so this must run, but: {reason}", pytrace=False)
    pytest.skip(reason)


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
    if sys.platform != "linux" or os.geteuid() != 0:
        unavailable("a local Slurm needs Linux and root (munged, slurmd, mknod for fake GPUs)")
    script = str(SCRIPTS / "slurm-local.sh")
    daemons = ("munged", "slurmctld", "slurmd", "sbatch")
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    if not all(shutil.which(d, path=path) for d in daemons):
        ok, out = _script([script, "install"], {}, timeout_s=600)
        if not ok:
            unavailable(f"could not install Slurm from Debian packages: {out}")
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
            unavailable(f"Slurm did not start: {out}\nslurmctld.log: {_tail(d / 'slurmctld.log')}")
        yield SlurmCluster(dir=d, conf=d / "slurm.conf")
    finally:
        pids = _pids(d / "slurmd.pid", d / "slurmctld.pid", d / "munge" / "munged.pid")
        _script([script, "stop", str(d)], {}, timeout_s=60)
        _kill_leftovers(pids, group=False)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    script = str(SCRIPTS / "ray-local.sh")
    env = {"PYTHON": sys.executable}
    if not (Path(sys.executable).parent / "ray").exists():
        ok, out = _script([script, "install"], env, timeout_s=600)
        if not ok:
            unavailable(f"could not install the `ray` extra: {out}")
    d = Path(tempfile.mkdtemp(prefix="suanli-ray-", dir="/tmp"))
    gcs, dash, client, agent = _free_ports(4)
    env |= {
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
            unavailable(f"Ray head did not start: {out}\nhead.log: {_tail(d / 'head.log')}")
        yield RayCluster(dir=d, address=f"http://127.0.0.1:{dash}")
    finally:
        pids = _pids(d / "head.pid")
        _script([script, "stop", str(d)], env, timeout_s=60)
        _kill_leftovers(pids, group=True)  # the head leads its own process group
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
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


REPORT_COMMAND = (
    '{ echo "cvd=$CUDA_VISIBLE_DEVICES"; echo "work=$SUANLI_WORK_ID"; '
    'echo "attempt=$SUANLI_ATTEMPT"; echo "gpus=$SUANLI_GPUS"; echo "resume=$SUANLI_RESUME"; '
    'echo "ckpt=$SUANLI_CHECKPOINT_DIR"; echo "foo=$FOO"; echo "cwd=$(pwd)"; } > report.txt; '
    "echo report-written; sleep {sleep_s}"
)

# Starts a child that ignores TERM (so only KILL or a group kill removes it), records the
# child's pid and the job shell's own ($$: the process group leader), then waits.
CHILD_COMMAND = (
    "sh -c 'trap \"\" TERM; sleep 600' & echo $! > child.pid; echo $$ > leader.pid; sleep 600"
)


@pytest.fixture(scope="session")
def report_command() -> Callable[[float], str]:
    """The shell command of a job that writes what it sees to report.txt in its cwd."""
    return lambda sleep_s: REPORT_COMMAND.replace("{sleep_s}", f"{sleep_s:g}")


@pytest.fixture(scope="session")
def child_command() -> str:
    return CHILD_COMMAND


@pytest.fixture(scope="session")
def read_report() -> Callable[[Path], dict[str, str]]:
    def read(path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    return read


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
