"""The ray backend against a real Ray head (Jobs API over HTTP) with 8 fake GPUs, declared
both as Ray GPUs (Ray binds CUDA_VISIBLE_DEVICES) and as the custom resource H100."""

from __future__ import annotations

import time
import uuid
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
from suanli.agent.ray import RayBackend, RaySettings

JOB_TIMEOUT_S = 90  # runtime env setup on a 2-core box takes a few seconds per job


def _ray(address: str, runs_dir: Path, **extra: object) -> RayBackend:
    backend = create_backend(
        default_registry(),
        "ray",
        {"address": address, "runs_dir": str(runs_dir), "simulated": True, **extra},
    )
    assert isinstance(backend, RayBackend)
    return backend


@pytest.fixture
def ray_gpus(ray_cluster: Any, tmp_path: Path) -> Iterator[RayBackend]:
    """GPUs as Ray's own GPU resource."""
    backend = _ray(ray_cluster.address, tmp_path / "runs", gpu_model="H100")
    yield backend
    backend.close()


@pytest.fixture
def ray_custom(ray_cluster: Any, tmp_path: Path) -> Iterator[RayBackend]:
    """GPUs as the custom resource H100."""
    backend = _ray(ray_cluster.address, tmp_path / "runs", gpu_resource="H100")
    yield backend
    backend.close()


def _work(name: str, command: str | tuple[str, ...], gpus: int, **kw: Any) -> WorkSpec:
    # Ray keeps submission ids for the life of the head: make each test's unique.
    return WorkSpec(id=f"{name}-{uuid.uuid4().hex[:8]}", command=command, gpus=gpus, **kw)


def _report_path(tmp_path: Path, work: WorkSpec) -> Path:
    return tmp_path / "runs" / work.job_name / "work" / "report.txt"


def test_discovers_gpus_from_the_cluster_resources(
    ray_gpus: RayBackend, ray_custom: RayBackend
) -> None:
    for backend in (ray_gpus, ray_custom):
        cap = backend.discover()
        assert [(p.gpu_model, p.gpu_count, p.gpus_per_node) for p in cap.pools] == [
            ("H100", 8, 8)  # --num-gpus=8 and --resources='{"H100": 8}' on the one node
        ]
        assert cap.pools[0].simulated
    custom_limits = {lim.feature for lim in ray_custom.limitations()}
    assert Feature.GPU_BINDING in custom_limits  # custom resources bind no device
    assert Feature.GPU_BINDING not in {lim.feature for lim in ray_gpus.limitations()}


def test_jobs_succeed_or_fail_with_exit_code_logs_and_usage(
    ray_gpus: RayBackend,
    ray_custom: RayBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    ok = _work("ok", report_command(1.0), 2, env={"FOO": "it's here"})
    custom = _work("custom", report_command(0), 2)
    bad = _work("bad", ("sh", "-c", "echo oops; exit 7"), 1)
    t0 = time.time()
    handles = [ray_gpus.submit(ok), ray_custom.submit(custom), ray_gpus.submit(bad)]
    wait_until(
        lambda: all(ray_gpus.status(h).state.terminal for h in handles),
        JOB_TIMEOUT_S,
        "all jobs to end",
    )
    t1 = time.time()
    h_ok, _, h_bad = handles

    ray_gpus.cancel(h_ok)  # a finished job is left as it is
    st = ray_gpus.status(h_ok)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0)
    assert "report-written" in st.log_tail
    report = read_report(_report_path(tmp_path, ok))
    assert len(report["cvd"].split(",")) == 2  # Ray bound 2 of its GPUs
    assert report["cwd"] == str(_report_path(tmp_path, ok).parent)
    assert report["ckpt"] == str(tmp_path / "runs" / ok.id / "checkpoints")
    assert (report["work"], report["gpus"], report["foo"]) == (ok.id, "2", "it's here")

    # A custom resource is counted, not bound: the job learns its count from SUANLI_GPUS.
    custom_report = read_report(_report_path(tmp_path, custom))
    assert (custom_report["cvd"], custom_report["gpus"]) == ("", "2")

    use = ray_gpus.usage(h_ok)
    assert use.gpus == 2 and use.started_at_s is not None and use.ended_at_s is not None
    held_s = use.ended_at_s - use.started_at_s
    assert use.gpu_seconds == pytest.approx(held_s * 2)
    # Ray's record runs from submission (declared limitation) to the end.
    assert t0 - 1 <= use.started_at_s and use.ended_at_s <= t1 + 1
    assert held_s >= 1.0  # the job slept 1 s

    st_bad = ray_gpus.status(h_bad)
    assert (st_bad.state, st_bad.exit_code) == (JobState.FAILED, 7)
    assert "exit code 7" in st_bad.reason and "oops" in st_bad.log_tail


def test_cancel_stops_the_job_and_its_children(
    ray_gpus: RayBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    child_command: str,
    alive: Callable[[int], bool],
) -> None:
    work = _work("long", child_command, 1)
    handle = ray_gpus.submit(work)
    pid_file = _report_path(tmp_path, work).parent / "child.pid"
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "",
        JOB_TIMEOUT_S,
        "the job to start its child",
    )
    child = int(pid_file.read_text())
    assert alive(child)

    ray_gpus.cancel(handle)

    wait_until(lambda: ray_gpus.status(handle).state.terminal, 30, "the job to stop")
    assert ray_gpus.status(handle).state is JobState.CANCELLED
    # Ray TERMs the entrypoint's process group, then KILLs it after 3 s.
    wait_until(lambda: not alive(child), 15, "the job's child to be killed")
    assert ray_gpus.usage(handle).gpu_seconds > 0


def test_concurrent_jobs_get_disjoint_gpus_and_extra_work_waits(
    ray_gpus: RayBackend,
    tmp_path: Path,
    wait_until: Callable[..., None],
    report_command: Callable[[float], str],
    read_report: Callable[[Path], dict[str, str]],
) -> None:
    a, b = _work("a", report_command(3), 4), _work("b", report_command(3), 4)
    ha, hb = ray_gpus.submit(a), ray_gpus.submit(b)
    wait_until(
        lambda: all(_report_path(tmp_path, w).exists() for w in (a, b)),
        JOB_TIMEOUT_S,
        "both jobs to run",
    )
    c = _work("c", report_command(0), 1)
    hc = ray_gpus.submit(c)
    assert ray_gpus.status(hc).state is JobState.PENDING  # all 8 GPUs are held
    assert ray_gpus.usage(hc).gpu_seconds == 0.0
    wait_until(
        lambda: all(ray_gpus.status(h).state.terminal for h in (ha, hb, hc)),
        JOB_TIMEOUT_S,
        "all jobs to end",
    )

    cvd = [set(read_report(_report_path(tmp_path, w))["cvd"].split(",")) for w in (a, b)]
    assert cvd[0].isdisjoint(cvd[1]) and len(cvd[0] | cvd[1]) == 8
    assert ray_gpus.status(hc).state is JobState.SUCCEEDED


def test_the_same_attempt_twice_is_refused(
    ray_gpus: RayBackend, wait_until: Callable[..., None]
) -> None:
    work = _work("twice", "true", 0)
    handle = ray_gpus.submit(work)
    with pytest.raises(SubmitRefused, match="already exists"):
        ray_gpus.submit(work)
    wait_until(lambda: ray_gpus.status(handle).state.terminal, JOB_TIMEOUT_S, "the job to end")


def test_unreachable_dashboard_is_reported_as_such(tmp_path: Path) -> None:
    # Port 9 (discard) has no listener here: the connection is refused at once.
    backend = RayBackend(RaySettings(address="http://127.0.0.1:9", runs_dir=tmp_path))
    with pytest.raises(BackendUnavailable):
        backend.discover()
    with pytest.raises(BackendUnavailable):
        backend.submit(WorkSpec(id="x", command="true"))
    backend.close()
