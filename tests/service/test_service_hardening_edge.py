"""The HTTP edge under abuse and outages (issue 9: D3, D8, D9, D10).

- D3: rate limits follow the account, however its header is spelled; an address that
  keeps presenting unknown tokens is cut off; a bad token costs one database lookup.
- D8: a database that is down or full answers 503 + ``Retry-After`` on a connection that
  stays open; ``/healthz`` stays 200 while ``/readyz`` says 503.
- D9: the SQLite files are the owner's alone.
- D10: ``/metrics`` names no pool without an operator token.
"""

from __future__ import annotations

import http.client
import json
import socket
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import event

from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.auth import resolve_token
from suanli.service.settings import ServiceSettings

# ----- D3: rate limits ------------------------------------------------------------------


def test_spellings_of_one_token_share_one_bucket(make_exchange: Any) -> None:
    x = make_exchange(rate_limit_per_s=0.001, rate_limit_burst=3)
    token = x.operator["Authorization"].split()[1]
    spellings = [f"Bearer {token}", f"bearer {token}", f"BEARER {token}", f"Bearer  {token}"]
    codes = [
        x.client.get("/v1/me", headers={"Authorization": spellings[i % 4]}).status_code
        for i in range(8)
    ]
    # burst 3, refill 0.001/s: three pass, whatever the spelling; the rest wait.
    assert codes == [200, 200, 200, 429, 429, 429, 429, 429]


def test_every_token_of_an_account_shares_its_bucket(make_exchange: Any) -> None:
    x = make_exchange(rate_limit_per_s=0.001, rate_limit_burst=4)
    r = x.client.post("/v1/tokens", headers=x.operator, json={"label": "second"})
    assert r.status_code == 201, r.text
    second = {"Authorization": f"Bearer {r.json()['token']}"}
    # 1 request spent above; 4 - 1 = 3 left for the account, split over two tokens.
    codes = [
        x.client.get("/v1/me", headers=(x.operator, second)[i % 2]).status_code for i in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_unknown_tokens_are_cut_off_per_address(make_exchange: Any) -> None:
    x = make_exchange()  # the default budget: 30 failures, refilled at 30 a minute
    x.rt.tokens.ttl_s = 0.0  # no positive caching: each valid request is a fresh lookup
    assert x.client.get("/v1/me", headers=x.operator).status_code == 200
    codes = [
        x.client.get("/v1/me", headers={"Authorization": f"Bearer sl_{uuid.uuid4().hex}"})
        for _ in range(40)
    ]
    statuses = [r.status_code for r in codes]
    assert statuses == [401] * 30 + [429] * 10
    last = codes[-1]
    assert int(last.headers["retry-after"]) >= 1
    assert last.headers["content-type"] == "application/problem+json"
    assert "unknown tokens" in last.json()["detail"]
    # A token that was valid lately still passes from that address (looked up again).
    assert x.client.get("/v1/me", headers=x.operator).status_code == 200


def test_a_bad_token_costs_one_lookup_while_cached(
    make_exchange: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = make_exchange()
    lookups: list[str] = []
    real = resolve_token

    def counting(session: Any, token: str, *rest: Any) -> Any:
        lookups.append(token)
        return real(session, token, *rest)

    monkeypatch.setattr("suanli.service.deps.resolve_token", counting)
    bad = {"Authorization": "Bearer sl_not-a-token"}
    assert [x.client.get("/v1/me", headers=bad).status_code for _ in range(20)] == [401] * 20
    assert lookups == ["sl_not-a-token"]


# ----- D8: the database goes away ---------------------------------------------------------


class _Proxy:
    """A TCP relay to PostgreSQL that the test can cut (listener and live connections)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        with self._lock:
            for s in self.conns:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@contextmanager
def _serving(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port (HTTP/1.1 keep-alive)."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(500):
        if server.started:
            ready.set()
            break
        ready.wait(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Any:
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def _assert_unavailable(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 503, body
    assert int(headers["retry-after"]) >= 1
    assert headers["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == 503 and "database" in doc["detail"]


def test_postgresql_outage_answers_503_on_a_connection_that_stays_open(
    pg: Any, tmp_path: Path
) -> None:
    url = pg.fresh()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    proxy = _Proxy((host_port.split(":")[0], int(host_port.split(":")[1])))
    proxied = url.replace(host_port, f"127.0.0.1:{proxy.port}")
    app = create_app(
        ServiceSettings(data_dir=tmp_path, database_url=proxied, clearing_enabled=False)
    )
    op = {"Authorization": f"Bearer {bootstrap(app)}"}
    with _serving(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _get(conn, "/v1/me", op)[0] == 200
            first = conn.sock
            proxy.cut()
            _assert_unavailable(*_get(conn, "/v1/jobs", op))
            _assert_unavailable(*_get(conn, "/v1/jobs", op))  # same connection, not reset
            status, headers, _ = _get(conn, "/readyz", {})
            assert status == 503 and int(headers["retry-after"]) >= 1
            assert _get(conn, "/healthz", {})[0] == 200
            assert conn.sock is first  # one keep-alive connection all along
        finally:
            conn.close()
            proxy.cut()


def test_sqlite_full_answers_503_on_a_connection_that_stays_open(tmp_path: Path) -> None:
    app = create_app(ServiceSettings(data_dir=tmp_path, clearing_enabled=False))
    op = {"Authorization": f"Bearer {bootstrap(app)}"}
    engine = runtime_of(app).db.engine
    engine.dispose()

    def full(dbapi_conn: Any, _record: Any) -> None:
        # The database may not grow past the pages it has: the next growth is SQLITE_FULL.
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", full)
    with _serving(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            assert _get(conn, "/v1/me", op)[0] == 200
            first = conn.sock
            status, headers, payload = 201, {}, b""
            for i in range(400):  # each tenant adds rows: the file soon needs a new page
                body = json.dumps({"name": f"t{i}-{'x' * 60}", "accounts": []})
                h = {**op, "Content-Type": "application/json"}
                conn.request("POST", "/v1/tenants", body=body, headers=h)
                r = conn.getresponse()
                status, headers, payload = r.status, dict(r.getheaders()), r.read()
                if status != 201:
                    break
            _assert_unavailable(status, headers, payload)
            assert _get(conn, "/v1/me", op)[0] == 200  # reads still work, same connection
            assert conn.sock is first
        finally:
            conn.close()


# ----- D9: file modes ---------------------------------------------------------------------


def test_sqlite_files_and_data_dir_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = create_app(ServiceSettings(data_dir=data, clearing_enabled=False))
    bootstrap(app)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    made = [p for p in data.iterdir() if p.name.startswith("exchange.db")]
    assert {p.name for p in made} >= {"exchange.db", "exchange.db-wal", "exchange.db-shm"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == {p.name: 0o600 for p in made}
    runtime_of(app).db.dispose()


def test_an_existing_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "exchange.db"
    create_app(ServiceSettings(data_dir=tmp_path, clearing_enabled=False))
    db.chmod(0o644)
    app = create_app(ServiceSettings(data_dir=tmp_path, clearing_enabled=False))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    runtime_of(app).db.dispose()


# ----- D10: /metrics ---------------------------------------------------------------------


def test_anonymous_metrics_show_aggregates_but_no_pool(make_exchange: Any) -> None:
    x = make_exchange()
    m = x.rt.metrics
    m.price.labels("pool-secret-a").set(12.5)
    m.price.labels("pool-secret-b").set(7.5)
    anon = x.client.get("/metrics")
    assert anon.status_code == 200
    assert "pool-secret" not in anon.text and "pool=" not in anon.text
    assert "suanli_pools_priced 2.0" in anon.text
    assert "suanli_price_cny_per_gpu_hour_mean 10.0" in anon.text
    buyer = x.tenant("b")
    assert "pool-secret" not in x.client.get("/metrics", headers=buyer).text
    full = x.client.get("/metrics", headers=x.operator).text
    assert 'suanli_pool_price_cny_per_gpu_hour{pool="pool-secret-a"} 12.5' in full
    bad = x.client.get("/metrics", headers={"Authorization": "Bearer sl_nope"})
    assert bad.status_code == 401


def test_the_clearing_leader_lock_is_private(tmp_path: Path) -> None:
    from suanli.service.loop import FileLeaderLock

    lock = FileLeaderLock(tmp_path / "data" / "exchange.db.clearing.lock")
    assert lock.acquire()
    try:
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(lock.path.parent.stat().st_mode) == 0o700
    finally:
        lock.release()
