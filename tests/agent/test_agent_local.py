"""The local backend with real processes on 4 fake GPUs from an inventory file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suanli.agent import (
    Feature,
    JobState,
    ResumeContract,
    ResumeMode,
    SubmitRefused,
    WorkSpec,
    create_backend,
    default_registry,
)
from suanli.agent.inventory import parse_inventory
from suanli.agent.local import LocalBackend, LocalSettings

pytestmark = pytest.mark.requires("bwrap")  # local work runs sandboxed

INVENTORY = """\
pools:
  - name: local-h100
    gpu: H100
    count: 4
    fabric: infiniband
    simulated: true
"""


@pytest.fixture
def local(tmp_path: Path) -> LocalBackend:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    backend = create_backend(
        default_registry(),
        "local",
        {"runs_dir": str(tmp_path / "runs"), "inventory": str(inv), "stop_grace_s": 0.5},
    )
    assert isinstance(backend, LocalBackend)
    return backend


def test_discovery_falls_back_to_the_inventory_and_says_so(local: LocalBackend) -> None:
    cap = local.discover()
    assert [
        (p.name, p.gpu_model, p.gpu_count, p.gpus_per_node, p.gpus_free) for p in cap.pools
    ] == [
        ("local-h100", "H100", 4, 4, 4)  # count 4, gpus_per_node defaults to count
    ]
    assert cap.pools[0].simulated
    features = {lim.feature for lim in local.limitations()}
    # No NVML in this venv: the GPUs come from the file, are fake, and energy is unmetered.
    assert {Feature.GPU_DISCOVERY, Feature.SIMULATED_GPUS, Feature.ENERGY} <= features


def test_job_sees_its_gpus_env_and_folders_and_is_metered(
    local: LocalBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    work = WorkSpec(
        id="ok-1",
        command=report_command(0.5),
        gpus=2,
        env={"FOO": "bar baz"},
        resume=ResumeContract(mode=ResumeMode.CHECKPOINT, checkpoint_every_s=60),
    )
    t0 = time.time()
    handle = local.submit(work)
    wait_until(lambda: local.status(handle).state.terminal, 20, "the job to end")
    t1 = time.time()

    st = local.status(handle)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0)
    assert "report-written" in st.log_tail
    workdir = tmp_path / "runs" / "suanli-ok-1-1" / "work"
    report = read_report(workdir / "report.txt")
    assert report["cvd"] == "0,1"  # the two lowest free devices of the pool
    assert st.gpu_ids == ("0", "1")
    assert report["cwd"] == str(workdir)
    assert report["ckpt"] == str(tmp_path / "runs" / "ok-1" / "checkpoints")
    assert Path(report["ckpt"]).is_dir()
    assert (report["work"], report["attempt"], report["gpus"]) == ("ok-1", "1", "2")
    assert (report["resume"], report["foo"]) == ("checkpoint", "bar baz")

    use = local.usage(handle)
    assert use.gpus == 2 and use.started_at_s is not None and use.ended_at_s is not None
    held_s = use.ended_at_s - use.started_at_s
    assert use.gpu_seconds == pytest.approx(held_s * 2)  # wall time × GPUs
    assert 0.5 <= held_s <= t1 - t0  # at least the job's sleep, at most what we watched


def test_failing_job_reports_its_exit_code(
    local: LocalBackend, wait_until: Callable[..., None]
) -> None:
    handle = local.submit(WorkSpec(id="bad-1", command=("sh", "-c", "echo oops >&2; exit 7")))
    wait_until(lambda: local.status(handle).state.terminal, 20, "the job to end")
    local.cancel(handle)  # a finished job is left as it is
    st = local.status(handle)
    assert (st.state, st.exit_code) == (JobState.FAILED, 7)
    assert "oops" in st.log_tail


def test_missing_executable_fails_with_127(
    local: LocalBackend, wait_until: Callable[..., None]
) -> None:
    handle = local.submit(WorkSpec(id="nx-1", command=("/nonexistent/tool",)))
    # Inside the sandbox the exec fails after the sandbox started: the job ends at once.
    wait_until(lambda: local.status(handle).state.terminal, 20, "the job to end")
    st = local.status(handle)
    assert (st.state, st.exit_code) == (JobState.FAILED, 127)
    assert "/nonexistent/tool" in st.log_tail


def test_cancel_kills_every_process_of_the_job(
    local: LocalBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    child_command: str,
    alive: Callable[[int], bool],
    processes_of: Callable[[str], list[int]],
) -> None:
    handle = local.submit(WorkSpec(id="long-1", command=child_command, gpus=1))
    workdir = tmp_path / "runs" / "suanli-long-1-1" / "work"
    wait_until(
        lambda: (workdir / "child.pid").exists() and (workdir / "child.pid").read_text().strip(),
        20,
        "the job to start",
    )
    # Pids inside the sandbox are its own namespace's: find the job's on the host.
    procs = processes_of("long-1")
    assert len(procs) >= 2 and all(alive(p) for p in procs)

    local.cancel(handle)  # TERM, then KILL after 0.5 s for the child that ignores TERM

    st = local.status(handle)
    assert st.state is JobState.CANCELLED
    assert st.exit_code == 143  # 128 + SIGTERM: the leader took the TERM
    assert not any(alive(p) for p in procs)
    assert processes_of("long-1") == []
    assert local.discover().pools[0].gpus_free == 4


def test_cancel_reaches_a_process_that_left_the_group(
    local: LocalBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    processes_of: Callable[[str], list[int]],
) -> None:
    # setsid: a new session and process group, as a daemon would make.
    command = "setsid sh -c 'trap \"\" TERM; sleep 600' & echo started > up; sleep 600"
    handle = local.submit(WorkSpec(id="escape-1", command=command))
    workdir = tmp_path / "runs" / "suanli-escape-1-1" / "work"
    wait_until(lambda: (workdir / "up").exists(), 20, "the job to start")
    wait_until(lambda: len(processes_of("escape-1")) >= 3, 20, "the daemon to start")

    local.cancel(handle)

    assert local.status(handle).state is JobState.CANCELLED
    assert processes_of("escape-1") == []  # the pid namespace took it along


def test_concurrent_jobs_get_disjoint_gpus_and_extra_work_waits(
    local: LocalBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    a = local.submit(WorkSpec(id="a", command=report_command(1.0), gpus=2))
    b = local.submit(WorkSpec(id="b", command=report_command(1.0), gpus=2))
    c = local.submit(WorkSpec(id="c", command=report_command(0), gpus=3))
    # 2 + 2 of 4 are taken: c waits for 3 free, and says so.
    st_c = local.status(c)
    assert st_c.state is JobState.PENDING and "3 free GPUs" in st_c.reason
    assert local.usage(c).gpu_seconds == 0.0
    wait_until(lambda: all(local.status(h).state.terminal for h in (a, b, c)), 30, "all jobs")

    cvd = {
        name: set(
            read_report(tmp_path / "runs" / f"suanli-{name}-1" / "work" / "report.txt")[
                "cvd"
            ].split(",")
        )
        for name in ("a", "b", "c")
    }
    assert cvd["a"].isdisjoint(cvd["b"])
    assert len(cvd["a"]) == len(cvd["b"]) == 2 and len(cvd["c"]) == 3
    assert all(local.status(h).state is JobState.SUCCEEDED for h in (a, b, c))


def test_cancel_before_start_never_runs(
    local: LocalBackend, wait_until: Callable[..., None], report_command: Callable[[float], str]
) -> None:
    big = local.submit(WorkSpec(id="big", command=report_command(1.0), gpus=4))
    queued = local.submit(WorkSpec(id="queued", command=report_command(0), gpus=1))
    local.cancel(queued)
    assert local.status(queued).state is JobState.CANCELLED
    assert local.usage(queued).started_at_s is None
    local.cancel(big)
    assert local.status(big).state is JobState.CANCELLED


@pytest.mark.parametrize(
    ("work", "why"),
    [
        (WorkSpec(id="huge", command="true", gpus=5), "needs 5 GPUs"),  # pool has 4
        (WorkSpec(id="wrong", command="true", gpus=1, gpu_model="A800"), "(A800)"),
        (WorkSpec(id="gang", command="true", gpus=4, nodes=2), "one host"),
    ],
)
def test_work_that_can_never_fit_is_refused(local: LocalBackend, work: WorkSpec, why: str) -> None:
    with pytest.raises(SubmitRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        local.submit(work)


def test_usage_is_time_held_times_gpus_on_the_agent_clock(
    tmp_path: Path, wait_until: Callable[..., None]
) -> None:
    ticks = iter(range(0, 10_000, 5))  # the monotonic clock moves 5 s per reading
    backend = LocalBackend(
        LocalSettings(runs_dir=tmp_path),
        parse_inventory({"pools": [{"gpu": "H100", "count": 2}]}, "test"),
        now=lambda: 1000.0,
        monotonic=lambda: float(next(ticks)),
    )
    handle = backend.submit(WorkSpec(id="t", command="true", gpus=2))
    wait_until(lambda: backend.status(handle).state.terminal, 20, "the job to end")
    use = backend.usage(handle)
    # Started at reading 0, ended at reading 5: 5 s held × 2 GPUs = 10 GPU-seconds.
    assert (use.gpu_seconds, use.started_at_s, use.ended_at_s) == (10.0, 1000.0, 1005.0)
