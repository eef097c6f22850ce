"""Many clients at once against a real server on PostgreSQL: submitting, retrying,
cancelling, redeeming, reporting and invoicing while the clearing loop runs.

Afterwards the books must balance, no voucher budget may be exceeded, every retry must
have applied once, and nothing may have been billed twice.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.audit import audit
from suanli.service.settings import ServiceSettings
from suanli.service.tables import JobRow, UsageRow, VoucherGrant

BUYERS = 6
CLAIM_FEN = 10_000
BUDGET_FEN = 3 * CLAIM_FEN  # room for exactly three redemptions

pytestmark = pytest.mark.slow  # a real server under load


@contextmanager
def serve(app: Any) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_many_clients_at_once_on_postgresql(
    pg: Any, tmp_path: Path, wait_until: Callable[..., None]
) -> None:
    app = create_app(
        ServiceSettings(
            data_dir=tmp_path, database_url=pg.fresh(), clear_interval_s=0.05, db_pool_size=20
        )
    )
    op = {"Authorization": f"Bearer {bootstrap(app)}"}
    errors: list[str] = []
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:

        def post(
            h: dict[str, str], path: str, body: Any = None, key: str | None = None
        ) -> httpx.Response:
            return c.post(
                path, headers={**h, "Idempotency-Key": key or uuid.uuid4().hex}, json=body or {}
            )

        seller_t = c.post(
            "/v1/tenants",
            headers=op,
            json={"name": "dc", "accounts": [{"name": "a", "role": "seller"}]},
        ).json()
        seller = {"Authorization": f"Bearer {seller_t['accounts'][0]['token']}"}
        site = c.post(
            "/v1/sites",
            headers=seller,
            json={"name": "sh", "province": "Shanghai", "lat": 31, "lon": 121},
        ).json()
        for gpu, n in (("H100", 4), ("A800", 4)):
            pool = c.post(
                "/v1/pools",
                headers=seller,
                json={
                    "site_id": site["id"],
                    "gpu": gpu,
                    "gpu_count": 8 * n,
                    "fabric": "infiniband",
                    "reserve_cny_per_gpu_hour": 3,
                },
            ).json()
            c.post(
                "/v1/offers",
                headers=seller,
                json={"pool_id": pool["id"], "reserve_cny_per_gpu_hour": 3},
            )
        prog = post(
            op,
            "/v1/vouchers",
            {"name": "v", "coverage": 0.3, "budget_fen": BUDGET_FEN, "claim_fen": CLAIM_FEN},
        ).json()
        buyers: list[dict[str, str]] = []
        tenant_ids: list[str] = []
        for i in range(BUYERS):
            t = c.post(
                "/v1/tenants",
                headers=op,
                json={"name": f"b{i}", "accounts": [{"name": "a", "role": "buyer"}]},
            ).json()
            buyers.append({"Authorization": f"Bearer {t['accounts'][0]['token']}"})
            tenant_ids.append(t["id"])

        def buyer_work(i: int) -> None:
            rng = random.Random(i)
            h = buyers[i]
            mine: list[str] = []
            try:
                for _ in range(2):  # two redemptions per buyer, one may succeed
                    r = post(h, f"/v1/vouchers/{prog['id']}/redeem")
                    if r.status_code not in (201, 409):
                        errors.append(f"redeem {r.status_code} {r.text}")
                for k in range(12):
                    spec = {
                        "name": f"j{k}",
                        "command": "run",
                        "resources": {"gpus": rng.choice([1, 2, 4, 8])},
                        "work_ref_gpu_hours": rng.uniform(1, 20),
                        "bid_cny_per_ref_gpu_hour": rng.uniform(2, 30),
                        "data": {"origin_city": "Shanghai"},
                    }
                    key = uuid.uuid4().hex
                    r = post(h, "/v1/jobs", spec, key)
                    if rng.random() < 0.3:  # a retry with the same key
                        again = post(h, "/v1/jobs", spec, key)
                        if again.json().get("id") != r.json().get("id"):
                            errors.append("a retry created a second job")
                    if r.status_code != 201:
                        errors.append(f"submit {r.status_code} {r.text}")
                        continue
                    mine.append(r.json()["id"])
                    if rng.random() < 0.25:
                        r = post(h, f"/v1/jobs/{rng.choice(mine)}/cancel")
                        if r.status_code not in (200, 409):
                            errors.append(f"cancel {r.status_code} {r.text}")
                for _ in range(2):
                    r = post(h, "/v1/invoices", {})
                    if r.status_code not in (201, 409):
                        errors.append(f"invoice {r.status_code} {r.text}")
            except Exception as exc:  # surfaced below
                errors.append(repr(exc))

        def operator_work() -> None:
            for i in range(BUYERS):
                key = uuid.uuid4().hex
                for _ in range(3):  # the same deposit sent three times
                    r = post(
                        op, f"/v1/tenants/{tenant_ids[i]}/deposits", {"amount_fen": 50_000}, key
                    )
                    if r.status_code != 201:
                        errors.append(f"deposit {r.status_code} {r.text}")

        stop = threading.Event()

        def agent_work() -> None:
            rng = random.Random(99)
            running: list[str] = []
            while not stop.is_set():
                try:
                    for lease in c.post("/v1/agent/leases", headers=seller, json={}).json():
                        if (
                            post(
                                seller,
                                "/v1/agent/reports",
                                {"job_id": lease["job_id"], "state": "running"},
                            ).status_code
                            == 200
                        ):
                            running.append(lease["job_id"])
                    while running:
                        job = running.pop()
                        state = rng.choice(["succeeded", "failed", "preempted"])
                        body: dict[str, Any] = {"job_id": job, "state": state}
                        if state != "preempted":  # ≤ 36 GPU-s: within the bound of a fresh lease
                            body.update(exit_code=0, gpu_hours=rng.uniform(0, 0.01))
                        r = post(seller, "/v1/agent/reports", body)
                        if r.status_code not in (200, 409):
                            errors.append(f"report {r.status_code} {r.text}")
                except Exception as exc:
                    errors.append(repr(exc))
                time.sleep(0.01)

        threads = [threading.Thread(target=buyer_work, args=(i,)) for i in range(BUYERS)]
        threads.append(threading.Thread(target=operator_work))
        agent = threading.Thread(target=agent_work)
        for t in [*threads, agent]:
            t.start()
        for t in threads:
            t.join(120)

        def billed() -> int:
            with runtime_of(app).db.read() as session:
                return session.scalar(select(func.count()).select_from(UsageRow)) or 0

        # The clearing loop places what the buyers left and the agent reports some of it.
        wait_until(lambda: billed() > 0, 60, "the agent's reports to be billed")
        stop.set()
        agent.join(30)

    assert errors == []
    rt = runtime_of(app)
    with rt.db.read() as s:
        assert audit(s) == []
        grants = s.scalar(select(func.count()).select_from(VoucherGrant))
        assert grants == 3  # BUDGET_FEN / CLAIM_FEN, however many tried at once
        jobs = s.scalar(select(func.count()).select_from(JobRow))
        assert jobs == BUYERS * 12
        billed = s.scalar(select(func.count()).select_from(UsageRow))
        distinct = s.scalar(select(func.count(func.distinct(UsageRow.allocation_id))))
        assert billed == distinct and billed > 0
        for i in range(BUYERS):
            w = s.scalar(
                select(func.count()).select_from(JobRow).where(JobRow.tenant_id == tenant_ids[i])
            )
            assert w == 12
    rt.db.dispose()
