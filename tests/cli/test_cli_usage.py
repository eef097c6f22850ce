"""``suanli usage`` against a live exchange: token sums as a table, JSON or CSV (to a
file or stdout) that add up to what the gateways reported; bad input exits 2."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from suanli.service.app import bootstrap, create_app, runtime_of
from suanli.service.clock import ManualClock
from suanli.service.settings import ServiceSettings
from suanli.service.tables import GatewayBatch, InferenceKey, TokenUsage

from .conftest import ServeLive, buyer_token, ok_cli, run_cli

SERVICE_YAML = """\
kind: service
name: chat
model: Llama-3.1-8B
demand_rps: {Shanghai: 4}
tokens: {prompt: 1000, output: 250}
slo: {ttft_ms: 2000, tpot_ms: 100}
bid_cny_per_m_output_tokens: 40
"""
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _report(rt: Any, service_id: str, tenant_id: str, lines: list[tuple[str, str, int]]) -> None:
    """Two gateway batches a day apart, each with ``(key_id, city, n)`` lines."""
    for day in range(2):
        end, batch = T0 + timedelta(days=day), uuid.uuid4().hex

        def run(session: Any, end: datetime = end, batch: str = batch) -> None:
            session.add(
                GatewayBatch(
                    batch_id=batch,
                    gateway="edge",
                    window_start=end,
                    window_end=end,
                    received_at=end,
                )
            )
            session.flush()
            for key_id, city, n in lines:
                session.add(
                    TokenUsage(
                        batch_id=batch,
                        tenant_id=tenant_id,
                        service_id=service_id,
                        key_id=key_id,
                        city=city,
                        window_end=end,
                        requests=n,
                        errors=0,
                        input_tokens=100 * n,
                        cached_input_tokens=10 * n,
                        output_tokens=50 * n,
                    )
                )

        rt.db.transact(run)


@pytest.fixture
def served(serve_live: ServeLive, tmp_path: Path, capsys: Any) -> Iterator[dict[str, str]]:
    """A live exchange on a fixed clock; a buyer's service chat with keys app-1, app-2
    and two days of reported usage."""
    app = create_app(
        ServiceSettings(data_dir=tmp_path, clearing_enabled=False), clock=ManualClock(T0)
    )
    rt = runtime_of(app)
    assert bootstrap(app)
    serve_live(app, buyer_token(rt))
    spec = tmp_path / "chat.yaml"
    spec.write_text(SERVICE_YAML)
    svc = json.loads(ok_cli(capsys, "serve", "up", str(spec), "--json"))
    keys = {
        n: json.loads(ok_cli(capsys, "keys", "create", "--service", "chat", "--name", n, "--json"))
        for n in ("app-1", "app-2")
    }
    ids = {n: k["id"] for n, k in keys.items()}
    lines = [(ids["app-1"], "Shanghai", 3), (ids["app-2"], "Beijing", 1)]
    _report(rt, svc["id"], svc["tenant_id"], lines)
    with rt.db.read() as s:
        assert all(s.get(InferenceKey, i) is not None for i in ids.values())
    yield ids


def test_table_json_and_groupings(served: dict[str, str], capsys: Any) -> None:
    table = ok_cli(capsys, "usage")
    assert "tokens by service" in table and "chat" in table and "800" in table
    rows = json.loads(ok_cli(capsys, "usage", "--json"))
    assert [(r["service_name"], r["requests"], r["output_tokens"]) for r in rows] == [
        ("chat", 8, 400)
    ]
    assert rows[0]["value_cny"] == pytest.approx(400 * 40 / 1e6)
    by_key = json.loads(ok_cli(capsys, "usage", "--by", "key", "--json"))
    assert {r["key_name"]: r["requests"] for r in by_key} == {"app-1": 6, "app-2": 2}
    by_city = json.loads(ok_cli(capsys, "usage", "--by", "city", "--json"))
    assert {r["city"]: r["input_tokens"] for r in by_city} == {"Shanghai": 600, "Beijing": 200}
    by_day = json.loads(ok_cli(capsys, "usage", "--by", "day", "--json"))
    assert [(r["day"], r["requests"]) for r in by_day] == [("2025-03-01", 4), ("2025-03-02", 4)]
    one_key = json.loads(ok_cli(capsys, "usage", "--key", served["app-2"], "--json"))
    assert [r["requests"] for r in one_key] == [2]
    second_day = json.loads(ok_cli(capsys, "usage", "--since", "2025-03-02", "--json"))
    assert [r["requests"] for r in second_day] == [4]
    first_day = json.loads(
        ok_cli(
            capsys, "usage", "--service", "chat", "--until", "2025-03-01T21:00:00+08:00", "--json"
        )
    )
    assert [r["requests"] for r in first_day] == [4]
    assert "no token usage" in ok_cli(capsys, "usage", "--since", "2030-01-01")


def test_csv_to_a_file_and_to_stdout(served: dict[str, str], capsys: Any, tmp_path: Path) -> None:
    path = tmp_path / "bill.csv"
    assert "wrote 2 rows" in ok_cli(capsys, "usage", "--by", "key", "--csv", str(path))
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == 3  # header + 2 rows, RFC 4180 line ends
    table = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert sum(int(r["requests"]) for r in table) == 8
    assert {r["key_name"] for r in table} == {"app-1", "app-2"}
    out = ok_cli(capsys, "usage", "--by", "day", "--csv", "-")
    days = list(csv.DictReader(io.StringIO(out)))
    assert [(d["day"], int(d["output_tokens"])) for d in days] == [
        ("2025-03-01", 200),
        ("2025-03-02", 200),
    ]


def test_bad_input_exits_2(served: dict[str, str], capsys: Any, tmp_path: Path) -> None:
    cases = [
        (("usage", "--by", "week"), "--by"),
        (("usage", "--since", "yesterday"), "ISO 8601"),
        (("usage", "--since", "2025-03-02", "--until", "2025-03-01"), "until must be after"),
        (("usage", "--service", "nope"), "your services: chat"),
        (("usage", "--key", "key-nonexistent"), "404"),
        (("usage", "--csv", str(tmp_path / "no" / "such" / "dir.csv")), "cannot write"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
