"""``suanli bench chaos`` on a few jobs: the exchange and an agent are each kill -9ed once
while work runs (real processes on loopback); afterwards nothing is lost, nothing is
billed twice, the books balance and no process of the run is left. The 200-job,
10-kill run is the benchmark's own, not a test."""

from __future__ import annotations

import random

import pytest

from suanli.bench.chaos import ChaosSettings, plan_jobs, plan_kills, run_chaos

pytestmark = [pytest.mark.slow, pytest.mark.requires("bwrap")]


def test_plans_are_seeded_and_alternate_exchange_and_agent_kills() -> None:
    cfg = ChaosSettings(jobs=40, kills=6, seed=7)
    jobs, kills = plan_jobs(cfg, random.Random(7)), plan_kills(cfg, random.Random(7))
    assert jobs == plan_jobs(cfg, random.Random(7))
    assert {j.gpus for j in jobs} <= set(range(1, 9)) and len({j.gpus for j in jobs}) > 4
    targets = ["exchange" if k.target == "exchange" else "agent" for k in kills]
    assert targets in (["exchange", "agent"] * 3, ["agent", "exchange"] * 3)
    assert [k.at_done_share for k in kills] == sorted(k.at_done_share for k in kills)


def test_a_short_chaos_run_loses_nothing_and_bills_once() -> None:
    # Seed 11: the exchange is killed once a job has ended, an agent once three have; 16
    # GPUs for 48 GPUs of work in jobs of 0.5–5 s, so work is running at both kills.
    cfg = ChaosSettings(jobs=12, kills=2, seed=11, gpus_per_site=8, max_steps=10, timeout_s=300)
    r = run_chaos(cfg)
    assert (r["kills_done"], r["exchange_kills"], r["agent_kills"]) == (2, 1, 1), r["kills"]
    assert r["lost"] == [] and r["double_billed"] == [], (r["lost"], r["double_billed"])
    assert r["unexpected"] == [], r["unexpected"]
    assert r["succeeded"] + r["failed"] == 12
    assert all(why.startswith("exited 3") for why in r["failed_reasons"]), r["failed_reasons"]
    assert r["ledger_balanced"], r["ledger_notes"]
    assert r["orphans"] == 0 and r["outlived_agent"] == 0, r
