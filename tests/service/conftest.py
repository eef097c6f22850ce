"""Fixtures for the exchange service: an app on SQLite (always) or PostgreSQL (the server
at 127.0.0.1:5432; ``require("postgresql")``), driven in-process with a manual clock.

``exchange`` is a :class:`Harness`: the test client plus helpers to make tenants, a
small market (hand-made sites at real cluster coordinates), clear rounds and play agents.
Each PostgreSQL test gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.clearing import RoundSummary, run_round
from suanli.service.clock import ManualClock
from suanli.service.runtime import Runtime
from suanli.service.settings import ServiceSettings


class PgDatabases:
    """Creates throwaway databases on the test server (cloned from a migrated template)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.base = admin_url.rsplit("/", 1)[0]
        self.template = f"suanli_tpl_{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.template}"')
        from suanli.service.db import Database
        from suanli.service.migrate import upgrade

        db = Database(f"{self.base}/{self.template}")
        upgrade(db)
        db.dispose()

    def fresh(self, *, migrated: bool = True) -> str:
        import psycopg

        name = f"suanli_t_{uuid.uuid4().hex[:10]}"
        tpl = f' TEMPLATE "{self.template}"' if migrated else ""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{tpl}')
        self.made.append(name)
        return f"{self.base}/{name}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in [*self.made, self.template]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg(pg_admin: str) -> Iterator[PgDatabases]:
    """Throwaway databases on the test server (``require("postgresql")`` via ``pg_admin``)."""
    dbs = PgDatabases(pg_admin)
    yield dbs
    dbs.drop_all()


# Where sellers' test sites stand: national cluster coordinates (catalogue values).
SITES: dict[str, dict[str, Any]] = {
    "sh": {"name": "Yangtze demo zone", "province": "Shanghai", "lat": 31.0, "lon": 121.0},
    "zw": {
        "name": "Zhongwei",
        "province": "Ningxia",
        "lat": 37.5,
        "lon": 105.2,
        "region": "west",
        "hub_id": "ningxia",
        "power_price_cny_per_kwh": 0.36,
    },
}


@dataclass
class Harness:
    app: FastAPI
    client: TestClient
    clock: ManualClock
    operator: dict[str, str]
    tenants: dict[str, str] = field(default_factory=dict)

    @property
    def rt(self) -> Runtime:
        return runtime_of(self.app)

    def tenant(self, name: str, role: str = "buyer", *, fund_cny: float = 0.0) -> dict[str, str]:
        """A tenant with one account of ``role``: its auth headers (tenant id in ``X-Tenant``)."""
        r = self.client.post(
            "/v1/tenants",
            headers=self.operator,
            json={"name": name, "accounts": [{"name": f"{name}-acct", "role": role}]},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        self.tenants[name] = body["id"]
        if fund_cny:
            self.deposit(body["id"], round(fund_cny * 100))
        return {"Authorization": f"Bearer {body['accounts'][0]['token']}", "X-Tenant": body["id"]}

    def deposit(self, tenant_id: str, fen: int) -> dict[str, Any]:
        r = self.post(f"/v1/tenants/{tenant_id}/deposits", self.operator, {"amount_fen": fen})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def post(
        self, path: str, headers: dict[str, str], body: Any = None, *, key: str | None = None
    ) -> Any:
        h = {**headers, "Idempotency-Key": key or uuid.uuid4().hex}
        return self.client.post(path, headers=h, json=body if body is not None else {})

    def get(self, path: str, headers: dict[str, str], **params: Any) -> Any:
        return self.client.get(path, headers=headers, params=params)

    def market(
        self,
        seller: dict[str, str],
        *,
        site: str = "sh",
        gpu: str = "H100",
        nodes: int = 2,
        reserve: float = 10.0,
        fabric: str = "infiniband",
    ) -> str:
        """A site (if new) with one pool on offer; returns the pool id."""
        site_id = f"{site}-{seller['X-Tenant'][-6:]}"
        if self.client.get(f"/v1/sites/{site_id}", headers=seller).status_code == 404:
            r = self.client.post("/v1/sites", headers=seller, json={"id": site_id, **SITES[site]})
            assert r.status_code == 201, r.text
        r = self.client.post(
            "/v1/pools",
            headers=seller,
            json={
                "site_id": site_id,
                "gpu": gpu,
                "gpu_count": 8 * nodes,
                "gpus_per_node": 8,
                "fabric": fabric,
                "reserve_cny_per_gpu_hour": reserve,
            },
        )
        assert r.status_code == 201, r.text
        pool_id = r.json()["id"]
        r = self.client.post(
            "/v1/offers",
            headers=seller,
            json={"pool_id": pool_id, "reserve_cny_per_gpu_hour": reserve},
        )
        assert r.status_code == 201, r.text
        return str(pool_id)

    def job(self, buyer: dict[str, str], **over: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": "job",
            "name": "train",
            "command": "python train.py",
            "resources": {"gpus": 8},
            "work_ref_gpu_hours": 16.0,
            "bid_cny_per_ref_gpu_hour": 20.0,
            "data": {"origin_city": "Shanghai"},
        }
        spec.update(over)
        r = self.post("/v1/jobs", buyer, spec)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def clear(self) -> RoundSummary:
        return run_round(self.rt)

    def report(self, seller: dict[str, str], job_id: str, state: str, **extra: Any) -> Any:
        return self.post("/v1/agent/reports", seller, {"job_id": job_id, "state": state, **extra})

    def wallet(self, who: dict[str, str]) -> dict[str, Any]:
        r = self.client.get("/v1/wallet", headers=who)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def audit(self) -> list[str]:
        r = self.client.get("/v1/ledger/audit", headers=self.operator)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def make_harness(db_url: str, tmp: Path, **settings: Any) -> Iterator[Harness]:
    # The exchange's own gateway runs background tasks against the database: only the
    # tests of it turn it on.
    settings.setdefault("gateway_enabled", False)
    clock = ManualClock()
    app = create_app(
        ServiceSettings(data_dir=tmp, database_url=db_url, clearing_enabled=False, **settings),
        clock=clock,
    )
    token = bootstrap(app)
    assert token is not None
    with TestClient(app) as client:
        yield Harness(app, client, clock, {"Authorization": f"Bearer {token}"})


@pytest.fixture(params=["sqlite", "postgresql"])
def exchange(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The harness on SQLite and on PostgreSQL (``require("postgresql")``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'exchange.db'}"
    else:
        url = request.getfixturevalue("pg").fresh()
    yield from make_harness(url, tmp_path)


@pytest.fixture
def sqlite_exchange(tmp_path: Path) -> Iterator[Harness]:
    """The harness on SQLite only (for tests whose behaviour does not depend on the DB)."""
    yield from make_harness(f"sqlite:///{tmp_path / 'exchange.db'}", tmp_path)


@pytest.fixture
def make_exchange(tmp_path: Path) -> Iterator[Any]:
    """``make_exchange(db_url=None, **settings)``: a harness with custom settings."""
    made: list[Iterator[Harness]] = []

    def make(db_url: str | None = None, **settings: Any) -> Harness:
        url = db_url or f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        gen = make_harness(url, tmp_path, **settings)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        gen.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def module_exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One SQLite harness shared by a module's tests (for read-mostly matrices)."""
    tmp = tmp_path_factory.mktemp("exchange")
    yield from make_harness(f"sqlite:///{tmp / 'exchange.db'}", tmp)
