"""The clearing loop: all-or-nothing rounds, one leader, metrics."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from suanli.service import round_write
from suanli.service.db import Database
from suanli.service.loop import ClearingLoop, FileLeaderLock, PgLeaderLock
from suanli.service.tables import AllocationRow, LedgerTransaction, RoundRow


def _counts(x: Any) -> tuple[int, int, int]:
    with x.rt.db.read() as s:
        return (
            s.scalar(select(func.count()).select_from(RoundRow)) or 0,
            s.scalar(select(func.count()).select_from(AllocationRow)) or 0,
            s.scalar(select(func.count()).select_from(LedgerTransaction)) or 0,
        )


def test_a_crash_mid_round_leaves_no_partial_round(
    exchange: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    x.market(seller, nodes=4)
    jobs = [x.job(buyer, name=f"j{i}") for i in range(3)]
    before = _counts(x)
    real_post_many = round_write.post_many

    def failing_post_many(*args: Any, **kwargs: Any) -> Any:
        real_post_many(*args, **kwargs)  # the holds are written …
        raise RuntimeError("power cut")  # … then the process dies

    monkeypatch.setattr(round_write, "post_many", failing_post_many)
    with pytest.raises(RuntimeError, match="power cut"):
        x.clear()
    assert _counts(x) == before
    assert {x.get(f"/v1/jobs/{j['id']}", buyer).json()["state"] for j in jobs} == {"pending"}
    assert x.wallet(buyer)["escrow_fen"] == 0
    monkeypatch.setattr(round_write, "post_many", real_post_many)
    assert x.clear().jobs_placed == 3
    assert x.audit() == []


def test_only_one_process_leads_on_postgresql(pg: Any) -> None:
    url = pg.fresh()
    a, b = Database(url), Database(url)
    la, lb = PgLeaderLock(a), PgLeaderLock(b)
    assert la.acquire() is True
    assert lb.acquire() is False
    assert la.acquire() is True  # still the leader
    la.release()
    assert lb.acquire() is True  # takes over once the leader lets go
    lb.release()
    a.dispose()
    b.dispose()


def test_only_one_process_leads_on_sqlite(tmp_path: Any) -> None:
    la, lb = FileLeaderLock(tmp_path / "x.lock"), FileLeaderLock(tmp_path / "x.lock")
    assert (la.acquire(), lb.acquire()) == (True, False)
    la.release()
    assert lb.acquire() is True
    lb.release()


def test_loop_clears_on_its_own_and_reports_metrics(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    x.market(seller)
    job = x.job(buyer)
    loop = ClearingLoop(x.rt, 0.05)
    loop.start()
    try:
        for _ in range(200):
            if x.get(f"/v1/jobs/{job['id']}", buyer).json()["state"] == "placed":
                break
            time.sleep(0.02)
    finally:
        loop.stop()
    assert loop.is_leader is False
    assert x.get(f"/v1/jobs/{job['id']}", buyer).json()["state"] == "placed"
    text = x.client.get("/metrics", headers=x.operator).text  # per-pool series: operators
    for name in (
        'suanli_clearing_rounds_total{outcome="cleared"}',
        "suanli_clearing_solve_seconds_count",
        "suanli_pending_jobs",
        "suanli_utilization_ratio",
        "suanli_pool_price_cny_per_gpu_hour{pool=",
        'suanli_http_request_seconds_count{method="GET",route="/v1/jobs/{job_id}",status="200"}',
    ):
        assert name in text, name
    rounds = x.get("/v1/market/rounds", buyer).json()
    assert rounds[0]["jobs_placed"] == 1
    prices = x.get("/v1/market/prices", buyer).json()
    assert prices[0]["price_cny_per_gpu_hour"] == 10.0 and prices[0]["gpus_sold"] == 8
