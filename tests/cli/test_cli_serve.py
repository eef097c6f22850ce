"""``suanli serve up|status|update|down`` against a live exchange with a small fleet:
services found by name, planned beside measured demand, clear refusals (exit 2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from suanli.catalog.fleet import load_fleet
from suanli.service.accounts import create_tenant, deposit
from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.auth import Role
from suanli.service.clearing import run_round
from suanli.service.runtime import Runtime
from suanli.service.seed import load_fleet_rows
from suanli.service.settings import ServiceSettings
from suanli.service.tables import GatewayBatch, ServiceTraffic, TokenUsage

from .conftest import ServeLive, ok_cli, run_cli

SERVICE_YAML = """\
kind: service
name: chat
model: Llama-3.1-8B
demand_rps: {Shanghai: 4, Beijing: 1}
tokens: {prompt: 1000, output: 250}
slo: {ttft_ms: 2000, tpot_ms: 100}
bid_cny_per_m_output_tokens: 40
"""
JOB_YAML = """\
kind: job
name: ft
command: python train.py
work_ref_gpu_hours: 1
bid_cny_per_ref_gpu_hour: 10
data: {origin_city: Shanghai}
"""


@pytest.fixture
def owner(serve_live: ServeLive, tmp_path: Path) -> Iterator[Runtime]:
    """A live exchange with a seller's fleet; the CLI logged in as a funded buyer."""
    app = create_app(ServiceSettings(data_dir=tmp_path, clearing_enabled=False))
    rt = runtime_of(app)
    fleet = load_fleet()
    tokens: list[str] = []

    def seed(session: Any) -> None:
        now = rt.clock.now()
        seller, _ = create_tenant(session, "dc", [("agent", Role.SELLER)], now)
        load_fleet_rows(
            session, fleet, rt.catalog, seller.id, now, site_ids=sorted(fleet.sites)[:8]
        )
        lab, made = create_tenant(session, "lab", [("alice", Role.BUYER)], now)
        deposit(session, lab.id, 10_000_000, now)
        tokens.append(made[0][1])

    assert bootstrap(app)  # the operator and the ledger's own accounts first
    rt.db.transact(seed)
    serve_live(app, tokens[0])
    yield rt


def _measured(rt: Runtime, service_id: str, tenant_id: str, key_id: str) -> None:
    """What a gateway would have reported over the last minute: Shanghai traffic (90 of
    100 judged requests met the SLO) and the tokens of one key."""
    now, batch = rt.clock.now(), uuid.uuid4().hex

    def run(session: Any) -> None:
        start = now - timedelta(seconds=60)
        session.add(
            GatewayBatch(
                batch_id=batch, gateway="edge", window_start=start, window_end=now, received_at=now
            )
        )
        session.flush()
        session.add(
            ServiceTraffic(
                batch_id=batch,
                service_id=service_id,
                city="Shanghai",
                window_start=start,
                window_end=now,
                requests=120,
                prompt_tokens=120_000,
                cached_tokens=30_000,
                output_tokens=30_000,
                slo_met=90,
                slo_total=100,
                rejected=3,
            )
        )
        session.add(
            TokenUsage(
                batch_id=batch,
                tenant_id=tenant_id,
                service_id=service_id,
                key_id=key_id,
                city="Shanghai",
                window_end=now,
                requests=120,
                errors=0,
                input_tokens=90_000,
                cached_input_tokens=30_000,
                output_tokens=30_000,
            )
        )

    rt.db.transact(run)


def test_up_status_update_down(owner: Runtime, capsys: Any, tmp_path: Path) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(SERVICE_YAML)
    svc = json.loads(ok_cli(capsys, "serve", "up", str(spec), "--json"))
    assert (svc["name"], svc["state"]) == ("chat", "active")
    assert run_round(owner).services_placed == 1
    _measured(owner, svc["id"], svc["tenant_id"], "key-x")

    rows = json.loads(ok_cli(capsys, "serve", "status", "--json"))
    assert [r["name"] for r in rows] == ["chat"]
    row = rows[0]
    assert row["replicas"] >= 1 and row["planned"] == pytest.approx(5.0)
    assert row["measured"] == pytest.approx(2.0, rel=0.1)  # 120 requests in the 60 s reported
    assert row["slo"] == "90.0%" and row["tokens"] == 150_000 and row["cost"] >= 0
    table = ok_cli(capsys, "serve", "status")
    assert "chat" in table and "measured req/s" in table and "90.0%" in table

    detail = ok_cli(capsys, "serve", "status", "chat")
    assert "replicas" in detail and "Shanghai" in detail and "Beijing" in detail
    assert "120 requests" in detail and "Cost so far" in detail
    one = json.loads(ok_cli(capsys, "serve", "status", svc["id"], "--json"))
    assert one["traffic"]["total"]["rejected"] == 3
    assert one["traffic"]["replicas"][0]["city"]  # where the replica serves from

    out = json.loads(
        ok_cli(
            capsys,
            *("serve", "update", "chat", "--demand", "shanghai=20", "--demand", "Chengdu=2"),
            *("--bid-input", "1.5", "--ttft-ms", "800", "--max-replicas", "3", "--json"),
        )
    )
    assert out["demand_rps"] == {"Shanghai": 20.0, "Beijing": 1.0, "Chengdu": 2.0}
    assert out["bid_cny_per_m_input_tokens"] == 1.5
    assert (out["ttft_ms"], out["tpot_ms"]) == (800.0, 100.0)  # TPOT kept
    assert out["max_replicas"] == 3
    assert "the next round plans with it" in ok_cli(
        capsys, "serve", "update", "chat", "--tpot-ms", "50"
    )

    assert "stopped" in ok_cli(capsys, "serve", "down", "chat")
    code, _, err = run_cli(capsys, "serve", "down", "chat")
    assert code == 2 and "already stopped" in err
    assert "no services" in ok_cli(capsys, "serve", "status")
    assert "chat" in ok_cli(capsys, "serve", "status", "--all")


def test_refusals_exit_2_with_a_message(owner: Runtime, capsys: Any, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB_YAML)
    code, _, err = run_cli(capsys, "serve", "up", str(job))
    assert code == 2 and "suanli submit" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(SERVICE_YAML.replace("Shanghai", "Shangai"))
    code, _, err = run_cli(capsys, "serve", "up", str(bad))
    assert code == 2 and "bad.yaml" in err and "demand_rps" in err
    good = tmp_path / "chat.yaml"
    good.write_text(SERVICE_YAML)
    ok_cli(capsys, "serve", "up", str(good))
    code, _, err = run_cli(capsys, "serve", "up", str(good))
    assert code == 2 and "already up" in err and "serve update chat" in err
    cases = [
        (("serve", "update", "nope", "--demand", "Shanghai=1"), "your services: chat"),
        (("serve", "status", "nope"), "no service named 'nope'"),
        (("serve", "update", "chat"), "nothing to update"),
        (("serve", "update", "chat", "--demand", "Shanghai"), "CITY=RPS"),
        (("serve", "update", "chat", "--demand", "Shanghai=lots"), "CITY=RPS"),
        (("serve", "update", "chat", "--bid-output", "-1"), "bid-output"),
        (("serve", "update", "chat", "--min-replicas", "4", "--max-replicas", "2"), "replicas"),
        (("serve", "down", "nope"), "your services: chat"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
