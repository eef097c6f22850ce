"""Malformed input never gets a 5xx: schemathesis over the OpenAPI document (a bounded
number of examples per operation, valid and invalid), plus hand-made nasty requests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

EXAMPLES_PER_OPERATION = 6


def _fuzz(x: Any, examples: int) -> list[tuple[str, str, int, str]]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", x.app)
    buyer = x.tenant("fuzz-buyer", "buyer", fund_cny=10)
    failures: list[tuple[str, str, int, str]] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 40  # every route is in the document
    for op in operations:
        strategy = op.as_strategy(generation_mode=GenerationMode.NEGATIVE) | op.as_strategy()

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            for who in (x.operator, buyer):
                r = case.call(headers={**who, "Idempotency-Key": uuid.uuid4().hex})
                if r.status_code >= 500:
                    failures.append((case.method, case.formatted_path, r.status_code, r.text[:300]))

        run()
    return failures


@pytest.mark.slow  # fuzzing: ~10 s
def test_no_5xx_on_sqlite(sqlite_exchange: Any) -> None:
    assert _fuzz(sqlite_exchange, EXAMPLES_PER_OPERATION) == []


@pytest.mark.slow
def test_no_5xx_on_postgresql(pg: Any, make_exchange: Any) -> None:
    assert _fuzz(make_exchange(pg.fresh()), 3) == []


NASTY: list[tuple[str, dict[str, Any] | str, int]] = [
    ("nul in a name", {"name": "a\x00b"}, 422),
    ("huge gpus", {"resources": {"gpus": 10**30}}, 422),
    ("negative work", {"work_ref_gpu_hours": -1}, 422),
    ("infinite bid", '{"bid": Infinity}', 422),
    ("NaN bid", {"bid_cny_per_ref_gpu_hour": float("nan")}, 422),
    ("not an object", "[1, 2, 3]", 422),
    ("broken JSON", '{"name": ', 422),
    ("unknown field", {"gpus_please": 8}, 422),
    ("unknown GPU", {"resources": {"gpus": 8, "allowed_gpus": ["H9000"]}}, 422),
    ("nothing to run", {"command": None, "image": None}, 422),
]


@pytest.mark.parametrize(("what", "change", "status"), NASTY, ids=[n[0] for n in NASTY])
def test_bad_job_specs_name_the_field(
    sqlite_exchange: Any, what: str, change: Any, status: int
) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    spec: dict[str, Any] = {
        "name": "t",
        "command": "run",
        "resources": {"gpus": 8},
        "work_ref_gpu_hours": 16,
        "bid_cny_per_ref_gpu_hour": 20,
        "data": {"origin_city": "Shanghai"},
    }
    content = json.dumps({**spec, **change}, allow_nan=True) if isinstance(change, dict) else change
    r = x.client.post(
        "/v1/jobs",
        headers={**buyer, "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"},
        content=content,
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["status"] == status and body["detail"]
    if isinstance(change, dict) and what != "nothing to run":
        field = next(iter(change))
        assert any(field in e["field"] for e in body["errors"]), body


def test_bodies_over_the_limit_are_refused(make_exchange: Any) -> None:
    x = make_exchange(max_body_bytes=2048)
    buyer = x.tenant("lab", "buyer")
    r = x.client.post(
        "/v1/jobs",
        headers={**buyer, "Idempotency-Key": "big"},
        json={"name": "t", "command": "x" * 5000},
    )
    assert r.status_code == 413
    assert r.json()["type"] == "urn:suanli:problem:payload-too-large"


def test_rate_limit_answers_429_with_retry_after(make_exchange: Any) -> None:
    x = make_exchange(rate_limit_per_s=1.0, rate_limit_burst=3)
    codes = [x.client.get("/healthz").status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    r = x.client.get("/healthz")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_unknown_routes_and_methods_are_problems(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    assert x.client.get("/v1/nope").json()["status"] == 404
    r = x.client.put("/v1/jobs", headers=x.operator)
    assert r.status_code == 405 and r.headers["content-type"].startswith("application/problem+json")
