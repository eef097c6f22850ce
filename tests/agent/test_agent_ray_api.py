"""The ray backend's reading of Jobs API answers, with canned responses (httpx.MockTransport)
shaped like Ray 2.60's; the real head is exercised in test_agent_ray.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanli.agent import Handle, JobState, SubmitRefused, WorkSpec
from suanli.agent.ray import RayBackend, RaySettings


def _backend(tmp_path: Path, routes: dict[str, Any], **settings: Any) -> tuple[RayBackend, list]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        key = f"{request.method} {request.url.path}"
        if key not in routes:
            return httpx.Response(404, text="not found")
        status, body = routes[key]
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    backend = RayBackend(
        RaySettings(runs_dir=tmp_path, **settings),
        transport=httpx.MockTransport(handle),
        now=lambda: 1000.0,
    )
    return backend, seen


def _job(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "SUBMISSION",
        "submission_id": "s",
        "status": status,
        "message": "msg",
        "start_time": 990_000,
        "end_time": None,
        "driver_exit_code": None,
        **extra,
    }


H = Handle(backend="ray", id="s", work_id="w", attempt=1, gpus=2)


@pytest.mark.parametrize(
    ("job", "state", "exit_code"),
    [
        (_job("PENDING"), JobState.PENDING, None),
        (_job("RUNNING"), JobState.RUNNING, None),
        (_job("SUCCEEDED", driver_exit_code=0), JobState.SUCCEEDED, 0),
        (_job("FAILED", driver_exit_code=7), JobState.FAILED, 7),
        (_job("STOPPED", driver_exit_code=-15), JobState.CANCELLED, 143),  # 128 + SIGTERM
        (_job("FAILED"), JobState.FAILED, None),  # e.g. the runtime env failed: no driver
    ],
)
def test_states_and_exit_codes(
    tmp_path: Path, job: dict[str, Any], state: JobState, exit_code: int | None
) -> None:
    backend, _ = _backend(
        tmp_path, {"GET /api/jobs/s": (200, job), "GET /api/jobs/s/logs": (200, {"logs": "a\nb\n"})}
    )
    st = backend.status(H)
    assert (st.state, st.exit_code, st.log_tail) == (state, exit_code, "a\nb")


@pytest.mark.parametrize(
    ("job", "gpu_seconds"),
    [
        (_job("PENDING"), 0.0),  # nothing held yet
        (_job("RUNNING"), 20.0),  # (1000 − 990) s so far × 2 GPUs
        (_job("SUCCEEDED", end_time=994_500), 9.0),  # (994.5 − 990) s × 2 GPUs
    ],
)
def test_usage_from_the_job_record(tmp_path: Path, job: dict[str, Any], gpu_seconds: float) -> None:
    backend, _ = _backend(tmp_path, {"GET /api/jobs/s": (200, job)})
    assert backend.usage(H).gpu_seconds == pytest.approx(gpu_seconds)


def test_submit_asks_for_gpus_the_configured_way(tmp_path: Path) -> None:
    ok = (200, {"job_id": "x", "submission_id": "suanli-w-1"})
    native, seen = _backend(tmp_path, {"POST /api/jobs/": ok})
    custom, seen_custom = _backend(tmp_path, {"POST /api/jobs/": ok}, gpu_resource="H100")
    work = WorkSpec(id="w", command=("python", "train.py"), gpus=4, env={"A": "1"})
    assert native.submit(work).id == "suanli-w-1"
    custom.submit(work)
    body, body_custom = json.loads(seen[0].content), json.loads(seen_custom[0].content)
    assert body["entrypoint_num_gpus"] == 4 and "entrypoint_resources" not in body
    assert body_custom["entrypoint_resources"] == {"H100": 4}
    assert body["submission_id"] == "suanli-w-1"
    assert body["runtime_env"]["env_vars"]["A"] == "1"
    assert body["runtime_env"]["env_vars"]["SUANLI_WORK_ID"] == "w"
    assert body["entrypoint"].endswith("&& exec python train.py")


def test_a_refusal_carries_the_exception_not_the_traceback(tmp_path: Path) -> None:
    traceback = (
        'Traceback (most recent call last):\n  File "job_head.py", line 419, in submit_job\n'
        "RuntimeError: Request failed with status code 400: Traceback ...\n"
        "ValueError: Job with submission_id suanli-w-1 already exists.\n.\n"
    )
    backend, _ = _backend(tmp_path, {"POST /api/jobs/": (400, traceback)})
    with pytest.raises(SubmitRefused, match=r"refused suanli-w-1: ValueError: Job with"):
        backend.submit(WorkSpec(id="w", command="true"))


def test_discovery_groups_alive_nodes_and_shares_out_free_gpus(tmp_path: Path) -> None:
    def node(state: str, gpus: int) -> dict[str, Any]:
        return {
            "state": state,
            "resources_total": {"CPU": 8, "GPU": gpus, "accelerator_type:H20": 1},
        }

    nodes = {
        "data": {
            "result": {
                "result": [node("ALIVE", 8), node("ALIVE", 8), node("DEAD", 8), node("ALIVE", 0)]
            }
        }
    }
    status = {"data": {"clusterStatus": {"loadMetricsReport": {"usage": {"GPU": [5.0, 16.0]}}}}}
    backend, _ = _backend(
        tmp_path, {"GET /api/v0/nodes": (200, nodes), "GET /api/cluster_status": (200, status)}
    )
    (pool,) = backend.discover().pools
    # Two alive 8-GPU nodes (the dead one and the CPU node do not count); 16 − 5 in use.
    assert (pool.gpu_model, pool.gpu_count, pool.gpus_per_node, pool.gpus_free) == (
        "H20",
        16,
        8,
        11,
    )
