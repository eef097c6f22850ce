"""The slurm backend against a real single-node Slurm with 8 fake GPUs (GRES gpu:h100:8)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.agent import (
    BackendUnavailable,
    Feature,
    JobState,
    SubmitRefused,
    WorkSpec,
    create_backend,
    default_registry,
)
from suanli.agent.slurm import SlurmBackend, SlurmSettings

# Slurm schedules in cycles: a job starts 1-4 s after sbatch on this kind of machine.
JOB_TIMEOUT_S = 60


@pytest.fixture
def slurm(slurm_cluster: Any, tmp_path: Path) -> Iterator[SlurmBackend]:
    backend = create_backend(
        default_registry(),
        "slurm",
        {
            "runs_dir": str(tmp_path / "runs"),
            "slurm_conf": str(slurm_cluster.conf),
            "simulated": True,
        },
    )
    assert isinstance(backend, SlurmBackend)
    yield backend
    backend.close()


def _report_path(tmp_path: Path, work: WorkSpec) -> Path:
    return tmp_path / "runs" / work.job_name / "work" / "report.txt"


def test_discovers_gres_gpus_and_declares_its_limits(slurm: SlurmBackend) -> None:
    cap = slurm.discover()
    # gres.conf declares gpu:h100:8 on the one node; the catalogue calls h100 "H100".
    assert [(p.name, p.gpu_model, p.gpu_count, p.gpus_per_node) for p in cap.pools] == [
        ("slurm-h100", "H100", 8, 8)
    ]
    assert cap.pools[0].simulated
    reasons = {lim.feature: lim.reason for lim in slurm.limitations()}
    assert "KillWait (5 sec)" in reasons[Feature.STOP_GRACE]  # read from scontrol show config
    assert Feature.SIMULATED_GPUS in reasons and Feature.USAGE in reasons


def test_jobs_succeed_or_fail_with_exit_code_logs_and_usage(
    slurm: SlurmBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    ok = WorkSpec(id="ok", command=report_command(1.5), gpus=2, env={"FOO": "it's here"})
    bad = WorkSpec(id="bad", command=("sh", "-c", "echo oops >&2; sleep 1; exit 7"), gpus=1)
    t0 = time.time()
    h_ok, h_bad = slurm.submit(ok), slurm.submit(bad)
    wait_until(
        lambda: all(slurm.status(h).state.terminal for h in (h_ok, h_bad)),
        JOB_TIMEOUT_S,
        "both jobs to end",
    )
    t1 = time.time()

    slurm.cancel(h_ok)  # a finished job is left as it is
    st = slurm.status(h_ok)
    assert (st.state, st.exit_code, st.reason) == (JobState.SUCCEEDED, 0, "COMPLETED")
    assert "report-written" in st.log_tail
    report = read_report(_report_path(tmp_path, ok))
    assert len(report["cvd"].split(",")) == 2  # Slurm bound 2 GRES GPUs
    assert report["cwd"] == str(_report_path(tmp_path, ok).parent)
    assert report["ckpt"] == str(tmp_path / "runs" / "ok" / "checkpoints")
    assert (report["work"], report["gpus"], report["foo"]) == ("ok", "2", "it's here")

    use = slurm.usage(h_ok)
    assert use.gpus == 2 and use.started_at_s is not None and use.ended_at_s is not None
    held_s = use.ended_at_s - use.started_at_s
    assert use.gpu_seconds == held_s * 2 > 0  # elapsed × GPUs, whole seconds
    assert 1 <= held_s <= (t1 - t0) + 1  # ran ≥ 1.5 s, rounded to seconds

    st_bad = slurm.status(h_bad)
    assert (st_bad.state, st_bad.exit_code) == (JobState.FAILED, 7)
    assert "NonZeroExitCode" in st_bad.reason and "oops" in st_bad.log_tail


def test_cancel_stops_the_job_and_its_children(
    slurm: SlurmBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    child_command: str,
    alive: Callable[[int], bool],
) -> None:
    work = WorkSpec(id="long", command=child_command, gpus=1)
    handle = slurm.submit(work)
    pid_file = _report_path(tmp_path, work).parent / "child.pid"
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "",
        JOB_TIMEOUT_S,
        "the job to start its child",
    )
    child = int(pid_file.read_text())
    assert alive(child)

    slurm.cancel(handle)

    wait_until(lambda: slurm.status(handle).state.terminal, 30, "the job to end")
    assert slurm.status(handle).state is JobState.CANCELLED
    # The child ignores TERM; proctrack/pgid KILLs the job's group within KillWait (5 s).
    wait_until(lambda: not alive(child), 15, "the job's child to be killed")
    assert slurm.usage(handle).gpus == 1


def test_concurrent_jobs_get_disjoint_gpus_and_extra_work_waits(
    slurm: SlurmBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    a = WorkSpec(id="a", command=report_command(3), gpus=4, gpu_model="H100")
    b = WorkSpec(id="b", command=report_command(3), gpus=4)
    c = WorkSpec(id="c", command=report_command(0), gpus=1)
    ha, hb = slurm.submit(a), slurm.submit(b)
    wait_until(
        lambda: all(slurm.status(h).state is JobState.RUNNING for h in (ha, hb)),
        JOB_TIMEOUT_S,
        "both jobs to run",
    )
    hc = slurm.submit(c)
    ids = [set(slurm.status(h).gpu_ids) for h in (ha, hb)]  # from the controller's record
    assert len(ids[0]) == len(ids[1]) == 4 and ids[0].isdisjoint(ids[1])
    st_c = slurm.status(hc)
    assert st_c.state is JobState.PENDING  # all 8 GPUs are held by a and b
    wait_until(
        lambda: all(slurm.status(h).state.terminal for h in (ha, hb, hc)),
        JOB_TIMEOUT_S,
        "all jobs to end",
    )

    cvd = [set(read_report(_report_path(tmp_path, w))["cvd"].split(",")) for w in (a, b)]
    assert cvd[0].isdisjoint(cvd[1]) and len(cvd[0] | cvd[1]) == 8
    assert slurm.status(hc).state is JobState.SUCCEEDED


def test_more_gpus_than_the_cluster_has_is_refused(slurm: SlurmBackend) -> None:
    with pytest.raises(SubmitRefused, match="not available"):
        slurm.submit(WorkSpec(id="huge", command="true", gpus=9))  # the node has 8
    with pytest.raises(SubmitRefused, match="no Slurm GRES type is a A800"):
        slurm.submit(WorkSpec(id="model", command="true", gpus=1, gpu_model="A800"))


def test_unreachable_controller_is_reported_as_such(
    tmp_path: Path, require: Callable[[str], None]
) -> None:
    require("slurm")
    conf = tmp_path / "slurm.conf"
    # A controller on a port where nothing listens; TCPTimeout=1 so the client gives up fast.
    conf.write_text(
        "ClusterName=x\nSlurmctldHost=nohost(127.0.0.1)\nSlurmctldPort=9\n"
        "AuthType=auth/munge\nTCPTimeout=1\nMessageTimeout=1\n"
        "NodeName=n CPUs=1\nPartitionName=p Nodes=ALL\n"
    )
    backend = SlurmBackend(SlurmSettings(runs_dir=tmp_path, slurm_conf=conf))
    with pytest.raises(BackendUnavailable, match="Unable to contact"):
        backend.discover()
