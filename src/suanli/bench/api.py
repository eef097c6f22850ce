"""``suanli bench api``: load on a running exchange, on SQLite and PostgreSQL in one run.

For each database the benchmark starts the exchange in its own process on loopback
(``python -m suanli.bench.api serve …``: the china-2025 fleet on offer, funded buyers),
then ``concurrency`` client threads submit ``jobs`` jobs over keep-alive HTTP as fast as
the server answers. It reports submissions per second, p50/p99 request latency, and the
time from submission to placement by the clearing loop (which runs every
``clear_interval_s``). Figures are measured, never judged pass/fail here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PG_CANDIDATES", "find_postgres", "run_api_bench"]

PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
BUYERS = 8


def find_postgres(url: str | None = None) -> str | None:
    """An admin URL of a reachable PostgreSQL (the given one, or the local test server)."""
    import psycopg

    for candidate in (url,) if url else PG_CANDIDATES:
        try:
            with psycopg.connect(candidate, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return candidate
        except psycopg.Error:
            continue
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(i: int) -> dict[str, Any]:
    # Small jobs with generous bids: every one fits somewhere, so placement time is the
    # clearing loop's, not the market's.
    gpus = (1, 2, 4, 8)[i % 4]
    return {
        "name": f"bench-{i}",
        "command": "true",
        "resources": {"gpus": gpus},
        "work_ref_gpu_hours": float(gpus),
        "bid_cny_per_ref_gpu_hour": 40.0,
        "data": {"origin_city": ("Shanghai", "Beijing", "Shenzhen", "Chengdu")[i % 4]},
    }


def _load(url: str, tokens: list[str], jobs: int, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies = np.zeros(jobs)
    status = np.zeros(jobs, dtype=np.int64)
    ids: list[str | None] = [None] * jobs
    next_i = iter(range(jobs))
    lock = threading.Lock()

    def worker(w: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[w % len(tokens)]}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post(
                        "/v1/jobs", json=_job(i), headers={"Idempotency-Key": uuid.uuid4().hex}
                    )
                    status[i] = r.status_code
                    if r.status_code == 201:
                        ids[i] = r.json()["id"]
                except httpx.HTTPError:
                    status[i] = -1
                latencies[i] = time.perf_counter() - t0

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.perf_counter() - started
    ok = status == 201
    return {
        "wall_s": wall_s,
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "per_s": float(ok.sum() / wall_s) if wall_s > 0 else 0.0,
        "p50_ms": float(np.percentile(latencies[ok], 50) * 1000) if ok.any() else None,
        "p99_ms": float(np.percentile(latencies[ok], 99) * 1000) if ok.any() else None,
    }


def _placement(url: str, operator: str, timeout_s: float) -> dict[str, Any]:
    """Wait until nothing is pending (or ``timeout_s``); submission → placement times."""
    from datetime import datetime

    import httpx

    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {operator}"}, timeout=60
    ) as c:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not c.get("/v1/jobs", params={"state": "pending", "limit": 1}).json():
                break
            time.sleep(0.25)
        waits: list[float] = []
        pending = 0
        offset = 0
        while True:
            page = c.get("/v1/jobs", params={"limit": 1000, "offset": offset}).json()
            for j in page:
                if j["placed_at"] is None:
                    pending += j["state"] == "pending"
                    continue
                placed = datetime.fromisoformat(j["placed_at"])
                waits.append((placed - datetime.fromisoformat(j["submitted_at"])).total_seconds())
            if len(page) < 1000:
                break
            offset += 1000
        rounds = c.get("/v1/market/rounds", params={"limit": 1000}).json()
    arr = np.array(waits) if waits else np.zeros(0)
    return {
        "placed": len(waits),
        "still_pending": pending,
        "place_p50_s": float(np.percentile(arr, 50)) if len(arr) else None,
        "place_p99_s": float(np.percentile(arr, 99)) if len(arr) else None,
        "rounds": len(rounds),
        "max_round_solve_ms": max((r["solve_ms"] for r in rounds), default=0.0),
    }


def _one(
    name: str, db_url: str | None, jobs: int, concurrency: int, clear_interval_s: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="suanli-bench-") as tmp:
        port = _free_port()
        info = Path(tmp) / "server.json"
        cmd = [
            sys.executable, "-m", "suanli.bench.api", "serve",
            "--port", str(port), "--data-dir", tmp, "--info", str(info),
            "--clear-interval", str(clear_interval_s),
        ]  # fmt: skip
        if db_url:
            cmd += ["--database-url", db_url]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(600):
                if info.exists() or proc.poll() is not None:
                    break
                time.sleep(0.1)
            if not info.exists():
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"the {name} exchange did not start: {err[-2000:]}")
            meta = json.loads(info.read_text())
            url = f"http://127.0.0.1:{port}"
            load = _load(url, meta["buyers"], jobs, concurrency)
            placed = _placement(url, meta["operator"], timeout_s=max(60.0, jobs / 50))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"database": name, "jobs": jobs, "concurrency": concurrency, **load, **placed}


def run_api_bench(
    *,
    jobs: int = 3000,
    concurrency: int = 32,
    clear_interval_s: float = 1.0,
    pg_url: str | None = None,
    databases: tuple[str, ...] = ("sqlite", "postgresql"),
) -> dict[str, Any]:
    """Measure the API on each database; PostgreSQL is skipped (noted) if unreachable."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    if "sqlite" in databases:
        rows.append(_one("sqlite", None, jobs, concurrency, clear_interval_s))
    if "postgresql" in databases:
        admin = find_postgres(pg_url)
        if admin is None:
            notes.append("PostgreSQL: no server reachable at 127.0.0.1:5432; skipped")
        else:
            import psycopg

            name = f"suanli_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                url = admin.rsplit("/", 1)[0] + "/" + name
                rows.append(_one("postgresql", url, jobs, concurrency, clear_interval_s))
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    notes.append(
        f"one server process (uvicorn, 1 worker) and the load generator ({concurrency} "
        f"threads, keep-alive) share this machine's {os.cpu_count()} cores; target "
        "≥ 500 submissions/s with p99 ≤ 100 ms"
    )
    return {"rows": rows, "notes": notes}


def _serve(argv: list[str]) -> None:
    """The benchmark's exchange: fleet on offer, funded buyers; writes tokens to --info."""
    import uvicorn

    from suanli.catalog.fleet import load_fleet
    from suanli.service.accounts import create_tenant, deposit
    from suanli.service.app import bootstrap, create_app, runtime_of
    from suanli.service.auth import Role
    from suanli.service.seed import load_fleet_rows
    from suanli.service.settings import ServiceSettings

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--info", required=True)
    p.add_argument("--database-url")
    p.add_argument("--clear-interval", type=float, default=1.0)
    a = p.parse_args(argv)
    settings = ServiceSettings(
        port=a.port,
        data_dir=Path(a.data_dir),
        database_url=a.database_url,
        clear_interval_s=a.clear_interval,
        rate_limit_per_s=1e6,
        rate_limit_burst=1_000_000,
        db_pool_size=40,
    )
    app = create_app(settings)
    rt = runtime_of(app)
    operator = bootstrap(app)
    fleet = load_fleet()
    now = rt.clock.now()

    def seed(session: Any) -> dict[str, Any]:
        seller, _ = create_tenant(session, "bench-seller", [("agent", Role.SELLER)], now)
        load_fleet_rows(session, fleet, rt.catalog, seller.id, now)
        tokens = []
        for i in range(BUYERS):
            t, made = create_tenant(session, f"bench-buyer-{i}", [("load", Role.BUYER)], now)
            deposit(session, t.id, 10**11, now, "bench funds")
            tokens.append(made[0][1])
        return {"operator": operator, "buyers": tokens}

    meta = rt.db.transact(seed)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
    )

    def announce() -> None:
        while not server.started:
            time.sleep(0.05)
        tmp = Path(a.info + ".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(a.info)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        _serve(sys.argv[2:])
