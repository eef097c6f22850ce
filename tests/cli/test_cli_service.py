"""The exchange from the command line: ``suanli up``, ``login``, ``submit``, ``status``,
``why``, ``cancel``, ``market prices``, ``vouchers``, ``invoices`` against a live server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from suanli.catalog.fleet import load_fleet
from suanli.cli.main import main
from suanli.service.accounts import create_tenant
from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.auth import Role
from suanli.service.seed import load_fleet_rows
from suanli.service.settings import ServiceSettings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


def _ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 0, err + out
    return out


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "login.json"))
    monkeypatch.delenv("SUANLI_URL", raising=False)
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    app = create_app(ServiceSettings(data_dir=tmp_path, clear_interval_s=0.05))
    rt = runtime_of(app)
    fleet = load_fleet()

    def seed(session: Any) -> None:
        seller, _ = create_tenant(session, "dc", [("agent", Role.SELLER)], rt.clock.now())
        load_fleet_rows(
            session, fleet, rt.catalog, seller.id, rt.clock.now(), site_ids=sorted(fleet.sites)[:8]
        )

    rt.db.transact(seed)
    token = bootstrap(app)
    assert token
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{sock.getsockname()[1]}", "token": token}
    srv.should_exit = True
    thread.join(10)
    sock.close()


JOB_YAML = """\
kind: job
name: finetune
image: pytorch/pytorch:2.4.0
command: torchrun train.py
resources: {gpus: 8}
work_ref_gpu_hours: 16
bid_cny_per_ref_gpu_hour: 30
data: {origin_city: Shanghai, size_gb: 10}
"""


def test_operator_and_buyer_workflow(
    server: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = server["url"]
    assert "(operator)" in _ok(capsys, "login", "--url", url, "--token", server["token"])
    tenant = json.loads(_ok(capsys, "tenants", "create", "lab", "--buyer", "alice", "--json"))
    buyer_token = tenant["accounts"][0]["token"]
    assert "wallet now 5,000.00 yuan" in _ok(
        capsys, "deposit", tenant["id"], "--amount-cny", "5000"
    )
    prog = json.loads(
        _ok(
            capsys,
            "vouchers",
            "create",
            "--name",
            "sh",
            "--coverage",
            "0.3",
            "--budget-cny",
            "1000",
            "--json",
        )
    )
    assert "holds 50.00 yuan" in _ok(
        capsys, "vouchers", "grant", prog["id"], tenant["id"], "--amount-cny", "50"
    )
    assert prog["id"] in _ok(capsys, "vouchers", "list")

    _ok(capsys, "login", "--url", url, "--token", buyer_token)
    spec = tmp_path / "job.yaml"
    spec.write_text(JOB_YAML)
    out = _ok(capsys, "submit", str(spec), "--json")
    job_id = json.loads(out)["id"]
    for _ in range(250):
        status = json.loads(_ok(capsys, "status", job_id, "--json"))
        if status["state"] == "placed":
            break
        time.sleep(0.02)
    assert status["state"] == "placed"
    why = _ok(capsys, "why", job_id)
    assert "placed on" in why and "price" in why and "history" in why
    assert job_id in _ok(capsys, "status")
    prices = json.loads(_ok(capsys, "market", "prices", "--json"))
    assert prices and all(
        p["price_cny_per_gpu_hour"] >= p["reserve_cny_per_gpu_hour"] for p in prices
    )
    assert "market prices" in _ok(capsys, "market", "prices")
    assert "cancelled" in _ok(capsys, "cancel", job_id)
    invoices = json.loads(_ok(capsys, "invoices", "--create", "--json"))
    assert len(invoices) == 1 and invoices[0]["total_fen"] == 0  # never started: free
    assert "wallet yuan" in _ok(capsys, "wallet")


def test_bad_files_and_refusals_exit_2_with_a_message(
    server: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _ok(capsys, "login", "--url", server["url"], "--token", server["token"])
    tenant = json.loads(_ok(capsys, "tenants", "create", "lab2", "--buyer", "bob", "--json"))
    _ok(capsys, "login", "--url", server["url"], "--token", tenant["accounts"][0]["token"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(JOB_YAML.replace("Shanghai", "Shangai"))
    code, _, err = _run(capsys, "submit", str(bad))
    assert code == 2 and "data.origin_city" in err and "Shanghai" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: job\nname: [unclosed\n")
    code, _, err = _run(capsys, "submit", str(broken))
    assert code == 2 and "invalid YAML" in err
    code, _, err = _run(
        capsys, "vouchers", "create", "--name", "x", "--coverage", "0.3", "--budget-cny", "10"
    )
    assert code == 2 and "operator" in err  # buyers may not create programs
    code, _, err = _run(capsys, "login", "--url", server["url"], "--token", "sl_wrong")
    assert code == 2 and "401" in err


def test_not_logged_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    code, _, err = _run(capsys, "status")
    assert code == 2 and "suanli login" in err


def test_up_refuses_a_public_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "up", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert code == 2 and "--allow-remote" in err


def test_up_starts_prints_the_operator_token_once_and_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = str(sock.getsockname()[1])
    sock.close()
    args = ("up", "--port", port, "--data-dir", str(tmp_path), "--duration", "0.5")
    out = _ok(capsys, *args)
    assert "operator token (shown once" in out and "suanli login --url" in out
    out = _ok(capsys, *args)
    assert "operator token (shown once" not in out and "an operator exists already" in out
    assert (tmp_path / "exchange.db").exists()
