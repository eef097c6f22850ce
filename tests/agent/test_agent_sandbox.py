"""Buyers' work attacking the host from inside the ``local`` backend's sandbox: each
attempt must fail, and each test checks that it did.

The layout mirrors a real site: an agent state folder holding the journal and the runs
folder, and the exchange's data folder with its database beside it, outside ``/tmp``
(the sandbox's ``/tmp`` is private, which would hide anything under it for free).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from suanli.agent import JobState, WorkSpec
from suanli.agent.local import LocalBackend, LocalSettings, local_backend
from suanli.agent.sandbox import SandboxSettings, SandboxUnavailable

pytestmark = pytest.mark.requires("bwrap")

SECRET = "s3cret-token-do-not-leak"
INVENTORY = "pools:\n  - gpu: H100\n    count: 4\n    simulated: true\n"


@dataclass(frozen=True)
class Site:
    """A host with an exchange and an agent: where the secrets are."""

    base: Path
    db: Path  # the exchange's database
    journal: Path  # the agent's journal (lease tokens, commands)
    runs: Path

    def backend(self, **sandbox: object) -> LocalBackend:
        inv = self.base / "inventory.yaml"
        inv.write_text(INVENTORY)
        return local_backend(
            {
                "runs_dir": str(self.runs),
                "inventory": str(inv),
                "stop_grace_s": 0.5,
                "sandbox": {"limits": {"cpu_hours": 1}, **sandbox},
            }
        )


@pytest.fixture
def site() -> Iterator[Site]:
    # Under /var/tmp, not /tmp: what the sandbox hides must be hidden by its design.
    base = Path(os.environ.get("SUANLI_TEST_SITE_DIR", "/var/tmp")) / f"suanli-sbx-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    data, state = base / "data", base / "agent"
    for d in (data, state):
        d.mkdir(parents=True, mode=0o700)
    db, journal = data / "exchange.db", state / "journal.jsonl"
    for f in (db, journal):
        f.write_text(SECRET)
        f.chmod(0o600)
    try:
        yield Site(base=base, db=db, journal=journal, runs=state / "runs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(backend: LocalBackend, wait_until: Callable[..., None], work: WorkSpec) -> str:
    """Run ``work`` to its end; its log (stdout, then stderr)."""
    handle = backend.submit(work)
    wait_until(lambda: backend.status(handle).state.terminal, 60, f"{work.id} to end")
    st = backend.status(handle)
    return f"exit={st.exit_code}\n{st.log_tail}"


def test_job_cannot_read_the_exchange_database_or_the_journal(
    site: Site, wait_until: Callable[..., None]
) -> None:
    backend = site.backend()
    targets = [site.db, site.journal, site.runs.parent / "journal.jsonl", Path("/root")]
    command = "; ".join(f"cat {t} || echo denied:{t}" for t in targets)
    log = run(backend, wait_until, WorkSpec(id="snoop", command=command))
    assert SECRET not in log
    for t in targets:
        assert f"denied:{t}" in log
    # Not in view at all (not merely unreadable): the data folder does not exist there.
    log = run(backend, wait_until, WorkSpec(id="look", command=f"ls -d {site.db.parent}"))
    assert "No such file or directory" in log


def test_job_runs_as_its_own_unprivileged_user_with_a_private_home_and_tmp(
    site: Site, wait_until: Callable[..., None], tmp_path: Path
) -> None:
    backend = site.backend()
    host_tmp = tmp_path / "host-secret"  # under the host's /tmp
    host_tmp.write_text(SECRET)
    command = (
        f'echo "uid=$(id -u) home=$HOME"; cat {host_tmp} || echo tmp-is-private; '
        "touch /tmp/mine && echo tmp-ok"
    )
    log = run(backend, wait_until, WorkSpec(id="who", command=command))
    workdir = site.runs / "suanli-who-1" / "work"
    if os.geteuid() == 0:
        assert f"uid={SandboxSettings().uid_base}" in log  # slot 0 of the sandbox users
        assert workdir.stat().st_uid == SandboxSettings().uid_base
    else:
        assert f"uid={os.geteuid()}" in log
    assert f"home={workdir}" in log
    # A /tmp of its own, that it may write: the host's is out of view and untouched.
    assert "tmp-is-private" in log and SECRET not in log
    assert "tmp-ok" in log and not Path("/tmp/mine").exists()


def test_job_cannot_write_outside_its_own_folders(
    site: Site, wait_until: Callable[..., None]
) -> None:
    backend = site.backend()
    outside = [
        site.runs / "planted",  # beside its run folder
        site.runs / "suanli-w-1" / "stdout.log",  # its own log, kept by the agent
        site.db.parent / "planted",
        Path(sys.prefix) / "planted",  # the agent's Python, shown read-only
        Path("/usr/local/planted"),
    ]
    command = "; ".join(f"echo x > {p} && echo wrote:{p}" for p in outside)
    command += "; echo ok > inside && mkdir -p $SUANLI_CHECKPOINT_DIR/c && echo done"
    log = run(backend, wait_until, WorkSpec(id="w", command=command))
    assert "wrote:" not in log and "done" in log
    for p in outside:
        assert not (p.exists() and p.read_text() == "x\n"), p
    assert (site.runs / "suanli-w-1" / "work" / "inside").read_text() == "ok\n"
    assert (site.runs / "w" / "checkpoints" / "c").is_dir()


def test_job_cannot_read_another_jobs_folder(site: Site, wait_until: Callable[..., None]) -> None:
    backend = site.backend()
    victim = backend.submit(
        WorkSpec(id="victim", command=f"echo {SECRET} > secret; echo ready > up; sleep 60")
    )
    victim_dir = site.runs / "suanli-victim-1" / "work"
    wait_until(lambda: (victim_dir / "up").exists(), 30, "the victim to start")
    command = (
        f"cat {victim_dir}/secret || echo denied-path; "
        f"cat ../../suanli-victim-1/work/secret || echo denied-relative; "
        "ls /proc | grep -c '^[0-9]'"
    )
    log = run(backend, wait_until, WorkSpec(id="thief", command=command))
    assert SECRET not in log
    assert "denied-path" in log and "denied-relative" in log
    backend.cancel(victim)


def test_memory_past_the_limit_is_refused(site: Site, wait_until: Callable[..., None]) -> None:
    backend = site.backend(limits={"memory_mb": 256, "cpu_hours": 1})
    grab = f"{sys.executable} -c 'b = bytearray(600 * 2**20); print(\"got it\")'"
    small = f"{sys.executable} -c 'b = bytearray(64 * 2**20); print(\"small ok\")'"
    log = run(backend, wait_until, WorkSpec(id="mem", command=f"{small}; {grab}"))
    assert "small ok" in log  # work under the limit runs
    assert "MemoryError" in log and "got it" not in log
    assert log.startswith("exit=1")


def test_processes_past_the_limit_cannot_start(site: Site, wait_until: Callable[..., None]) -> None:
    backend = site.backend(limits={"max_processes": 24, "cpu_hours": 1})
    # 100 children wanted; each fork past the limit fails with EAGAIN.
    script = (
        "import os, signal, time\n"
        "kids = []\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except BlockingIOError:\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "    kids.append(pid)\n"
        "print('started', len(kids))\n"
        "for k in kids: os.kill(k, signal.SIGKILL)\n"
    )
    log = run(backend, wait_until, WorkSpec(id="many", command=(sys.executable, "-c", script)))
    started = int(log.split("started ")[1].split()[0])
    # The job's user may run 24 processes: its shell-less python and 23 children at most.
    assert 0 < started < 24, log


def test_a_fork_bomb_is_contained_and_cancelled(
    site: Site, wait_until: Callable[..., None], processes_of: Callable[[str], list[int]]
) -> None:
    backend = site.backend(limits={"max_processes": 32, "cpu_hours": 1})
    handle = backend.submit(WorkSpec(id="bomb", command="b() { b | b & }; b; sleep 600"))
    wait_until(
        lambda: "Cannot fork" in backend.status(handle).log_tail, 30, "the bomb to hit its limit"
    )
    assert len(processes_of("bomb")) <= 32 + 2  # its user's limit, plus bwrap's two
    assert backend.status(handle).state is JobState.RUNNING  # its leader lives on
    backend.cancel(handle)
    assert backend.status(handle).state is JobState.CANCELLED
    wait_until(lambda: not processes_of("bomb"), 10, "every process of the bomb to go")


def test_without_bubblewrap_the_agent_refuses_and_says_how_to_fix_it(site: Site) -> None:
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*--unsafe"):
        site.backend(bwrap="/nonexistent/bwrap")


def test_unsafe_no_sandbox_is_declared_to_sellers(site: Site) -> None:
    backend = site.backend(enabled=False)
    reasons = [lim.reason for lim in backend.limitations()]
    assert any(r.startswith("UNSAFE") for r in reasons)


def test_settings_default_to_the_sandbox() -> None:
    assert LocalSettings(runs_dir=Path("/x")).sandbox.enabled
