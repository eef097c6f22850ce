"""D2: a buyer redeems a voucher program's claim once, however many requests race.

A real server on PostgreSQL (READ COMMITTED, a thread pool of handlers): in each trial
one buyer fires 16 ``POST /v1/vouchers/{id}/redeem`` at once, each with its own
Idempotency-Key. Exactly one may grant the 100-fen claim; the others are 409.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.audit import audit
from suanli.service.settings import ServiceSettings
from suanli.service.tables import VoucherGrant

THREADS = 16
TRIALS = 20
CLAIM_FEN = 100


@contextmanager
def serve(app: Any) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _redeem_at_once(url: str, buyer: dict[str, str], program_id: str) -> list[int]:
    """Fire THREADS redeems released together by a barrier; their status codes."""
    start = threading.Barrier(THREADS)
    codes: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            headers = {**buyer, "Idempotency-Key": uuid.uuid4().hex}
            start.wait()
            code = c.post(f"/v1/vouchers/{program_id}/redeem", headers=headers).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return codes


@pytest.mark.slow  # 20 trials of 16 threads on PostgreSQL: ~20 s
def test_concurrent_redeems_grant_the_claim_once_on_postgresql(pg: Any, tmp_path: Path) -> None:
    app = create_app(
        ServiceSettings(
            data_dir=tmp_path,
            database_url=pg.fresh(),
            clearing_enabled=False,
            db_pool_size=THREADS + 4,
        )
    )
    op = {"Authorization": f"Bearer {bootstrap(app)}"}
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        t = c.post(
            "/v1/tenants",
            headers=op,
            json={"name": "lab", "accounts": [{"name": "a", "role": "buyer"}]},
        ).json()
        buyer = {"Authorization": f"Bearer {t['accounts'][0]['token']}"}
        outcomes = []
        for trial in range(TRIALS):
            prog = c.post(
                "/v1/vouchers",
                headers={**op, "Idempotency-Key": uuid.uuid4().hex},
                json={
                    "name": f"v{trial}",
                    "coverage": 0.5,
                    "budget_fen": 100 * CLAIM_FEN,  # room for many claims: only once-per-buyer
                    "claim_fen": CLAIM_FEN,  # stands between the racers and a second grant
                },
            ).json()
            codes = _redeem_at_once(url, buyer, prog["id"])
            outcomes.append((sorted(codes), prog["id"]))

    rt = runtime_of(app)
    with rt.db.read() as s:
        granted = {g.program_id: g.amount_fen for g in s.scalars(select(VoucherGrant))}
        assert audit(s) == []
    rt.db.dispose()
    for codes, program_id in outcomes:
        assert codes == [201] + [409] * (THREADS - 1)
        assert granted[program_id] == CLAIM_FEN
