"""Failover end to end: 24 jobs of 1–8 GPUs on two sites, the cheaper local site's agent
SIGKILLed mid-run; every job still finishes exactly once, on the survivor where it had to
move, resumed from its checkpoint; the ledger balances; each job's events tell its story.

Sites: ``e2e-local`` — the ``local`` backend, 4 simulated H100s on one node, reserve 5
yuan/GPU-h, in Shanghai; the survivor — real Slurm (GRES gpu:h100:8) or a real Ray head
(8 × custom resource H100), reserve 8, in Beijing. Local is cheaper, so work goes there
first; 8-GPU jobs fit only the survivor.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,  # end to end: real `suanli` processes
    pytest.mark.requires("bwrap"),  # local work runs sandboxed
]

SURVIVOR_SOURCES = {
    "slurm": "slurm controller (scontrol), whole seconds",
    "ray": "ray job record (submission to end, ms)",
}


def _check(outcome: Any, survivor_site: str, backend: str) -> None:
    jobs, events = outcome.jobs, outcome.events
    # Every job succeeded, exactly once.
    assert [j["state"] for j in jobs] == ["succeeded"] * len(jobs), [
        (j["name"], j["state"], j["reason"]) for j in jobs if j["state"] != "succeeded"
    ]
    for j in jobs:
        to = [e["to_state"] for e in events[j["id"]]]
        assert to.count("succeeded") == 1 and to[-2:] == ["running", "succeeded"], (j["name"], to)

    # The local site was taken down for its silence, and its work moved to the survivor.
    moved = [j for j in jobs if "preempted" in [e["to_state"] for e in events[j["id"]]]]
    assert moved, "the killed agent held no work"
    for j in moved:
        evs = events[j["id"]]
        pre = next(e for e in evs if e["to_state"] == "preempted")
        assert pre["reason"].startswith("site e2e-local down: agent silent for"), pre["reason"]
        assert j["pool_id"].startswith(f"{survivor_site}/"), (j["name"], j["pool_id"])
        # The story: placed on local (maybe started), preempted, placed again on the
        # survivor, run there by its backend, succeeded.
        to = [e["to_state"] for e in evs]
        assert to[-5:] == ["preempted", "pending", "placed", "running", "succeeded"], to
        assert evs[-3]["reason"].startswith(f"{survivor_site}/")  # placed: the engine's why
        assert evs[-2]["data"]["site_id"] == survivor_site and evs[-2]["data"]["backend_job_id"]
        done = evs[-1]["data"]
        assert done["usage"]["source"] == SURVIVOR_SOURCES[backend]
        # Resumed from its checkpoint: the survivor's attempt started where local left off
        # (local work dies with its agent, so that is the step saved at the kill).
        m = re.search(r"attempt (\d+) on (\w+): resumed at step (\d+)", done["log_tail"])
        assert m is not None and m.group(2) == backend, done["log_tail"]
        assert int(m.group(3)) == outcome.saved_steps[j["id"]], done["log_tail"]
        if "running" in to[: to.index("preempted")]:
            assert int(m.group(1)) >= 2, done["log_tail"]
    assert any(outcome.saved_steps[j["id"]] > 0 for j in moved), "no moved job had a checkpoint"

    # 8-GPU work fits only the survivor's 8-GPU node.
    for j in jobs:
        if j["gpus"] == 8:
            assert j["pool_id"].startswith(f"{survivor_site}/"), j

    # Billing: one usage record per allocation, one allocation per placement; succeeded
    # attempts carry exit code 0 and the backend's own usage; the books balance.
    usage = outcome.usage
    placements = sum([e["to_state"] for e in events[j["id"]]].count("placed") for j in jobs)
    assert len(usage) == len({u["allocation_id"] for u in usage}) == placements
    finals = {u["item_id"]: u for u in usage if u["exit_code"] == 0}
    assert set(finals) == {j["id"] for j in jobs}
    for j in jobs:
        metered = finals[j["id"]]["details"]["backend_usage"]
        # A moved job may find its work all done and end at once: 0 whole seconds.
        assert metered["gpu_seconds"] > 0 or j in moved, (j["name"], metered)
    assert outcome.audit == []
    # The run took what it took; shown with -s, never judged.
    print(
        f"\n{backend}: local agent killed at {outcome.kill_at_s:.1f} s, all "
        f"{len(jobs)} jobs done at {outcome.done_at_s:.1f} s; {len(moved)} moved"
    )


def test_local_agent_killed_slurm_takes_over(
    exchange: Any, slurm_cluster: Any, run_failover: Callable[..., Any]
) -> None:
    def slurm(token: str) -> subprocess.Popen[bytes]:
        return exchange.agent(
            token,
            "slurm",
            "e2e-slurm",
            "Beijing",
            8.0,
            "--backend-opt",
            f"slurm_conf={slurm_cluster.conf}",
            "--backend-opt",
            "simulated=true",
        )

    _check(run_failover(slurm, "e2e-slurm"), "e2e-slurm", "slurm")


def test_local_agent_killed_ray_takes_over(
    exchange: Any, ray_cluster: Any, run_failover: Callable[..., Any]
) -> None:
    def ray(token: str) -> subprocess.Popen[bytes]:
        return exchange.agent(
            token,
            "ray",
            "e2e-ray",
            "Beijing",
            8.0,
            "--backend-opt",
            f"address={ray_cluster.address}",
            "--backend-opt",
            "gpu_resource=H100",
            "--backend-opt",
            "gpu_model=H100",
            "--backend-opt",
            "simulated=true",
        )

    _check(run_failover(ray, "e2e-ray"), "e2e-ray", "ray")
