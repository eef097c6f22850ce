"""Inference keys: created by a service's owner, shown once, hashed at rest, revoked at
once (gateways are woken), invisible to other tenants."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from sqlalchemy import select

from suanli.service.tables import Event, IdempotencyRecord, InferenceKey

SERVICE = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 5},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
}


def _service(x: Any, buyer: dict[str, str], name: str = "chat") -> str:
    r = x.post("/v1/services", buyer, {**SERVICE, "name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _key(x: Any, buyer: dict[str, str], svc: str, **body: Any) -> Any:
    return x.post(f"/v1/services/{svc}/keys", buyer, {"name": "app-1", **body})


def test_a_key_is_shown_once_and_only_its_digest_is_stored(exchange: Any) -> None:
    x = exchange
    buyer = x.tenant("lab", "buyer")
    svc = _service(x, buyer)
    before = x.rt.serving_changes.count
    r = _key(x, buyer, svc, rpm=600, tokens_per_day=1_000_000)
    assert r.status_code == 201, r.text
    out = r.json()
    key = out["key"]
    assert re.fullmatch(r"sk-suanli-[A-Za-z0-9_-]{40}", key)
    assert out["prefix"] == key[:16] and out["service_id"] == svc
    assert (out["name"], out["rpm"], out["tokens_per_day"]) == ("app-1", 600, 1_000_000)
    assert x.rt.serving_changes.count == before + 1  # gateways learn of it at once
    with x.rt.db.read() as s:
        row = s.get(InferenceKey, out["id"])
        assert row is not None and row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        values = [str(getattr(row, c.name)) for c in InferenceKey.__table__.columns]
        assert all(key not in v for v in values)
        # Nor in the stored idempotent answer, nor in the event log.
        stored = s.scalars(select(IdempotencyRecord.response_json)).all()
        events = s.scalars(select(Event).where(Event.subject_id == out["id"])).all()
        assert stored and all(key not in text for text in stored)
        assert [e.kind for e in events] == ["created"]
        assert all(key not in str(e.data) + e.reason for e in events)
    listed = x.get(f"/v1/services/{svc}/keys", buyer).json()
    assert [k["id"] for k in listed] == [out["id"]] and listed[0]["key"] is None
    assert [k["id"] for k in x.get("/v1/keys", buyer).json()] == [out["id"]]


def test_a_retried_create_mints_no_second_key(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    svc = _service(x, buyer)
    first = x.post(f"/v1/services/{svc}/keys", buyer, {"name": "a"}, key="k-1")
    again = x.post(f"/v1/services/{svc}/keys", buyer, {"name": "a"}, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["key"] and again.json()["key"] is None  # shown once, only once
    assert len(x.get("/v1/keys", buyer).json()) == 1
    no_key = x.client.post(f"/v1/services/{svc}/keys", headers=buyer, json={"name": "b"})
    assert no_key.status_code == 428


def test_keys_are_invisible_to_other_tenants(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    alice, bob = x.tenant("alice", "buyer"), x.tenant("bob", "buyer")
    svc = _service(x, alice)
    key = _key(x, alice, svc).json()
    assert _key(x, bob, svc).status_code == 404
    assert x.get(f"/v1/services/{svc}/keys", bob).status_code == 404
    assert x.get("/v1/keys", bob).json() == []
    assert x.get("/v1/keys", bob, service_id=svc).status_code == 404
    assert x.client.delete(f"/v1/keys/{key['id']}", headers=bob).status_code == 404
    assert x.client.delete("/v1/keys/key-nonexistent", headers=alice).status_code == 404
    # Operators see everyone's keys; sellers may not manage keys at all.
    assert [k["id"] for k in x.get("/v1/keys", x.operator).json()] == [key["id"]]
    seller = x.tenant("dc", "seller")
    assert x.get("/v1/keys", seller).status_code == 403


def test_revocation_is_immediate_idempotent_and_wakes_gateways(exchange: Any) -> None:
    x = exchange
    buyer = x.tenant("lab", "buyer")
    svc = _service(x, buyer)
    key = _key(x, buyer, svc).json()
    before = x.rt.serving_changes.count
    assert x.client.delete(f"/v1/keys/{key['id']}", headers=buyer).status_code == 204
    assert x.rt.serving_changes.count == before + 1
    with x.rt.db.read() as s:
        row = s.get(InferenceKey, key["id"])
        assert row is not None and row.revoked_at is not None
        first_revoked = row.revoked_at
    x.clock.advance(seconds=5)
    assert x.client.delete(f"/v1/keys/{key['id']}", headers=buyer).status_code == 204
    assert x.rt.serving_changes.count == before + 1  # nothing changed, nobody woken
    with x.rt.db.read() as s:
        row = s.get(InferenceKey, key["id"])
        assert row is not None and row.revoked_at == first_revoked
        kinds = s.scalars(select(Event.kind).where(Event.subject_id == key["id"])).all()
        assert list(kinds) == ["created", "revoked"]
    assert x.get("/v1/keys", buyer).json() == []
    listed = x.get("/v1/keys", buyer, include_revoked="true").json()
    assert [k["id"] for k in listed] == [key["id"]] and listed[0]["revoked_at"]


def test_no_keys_for_a_stopped_service(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    svc = _service(x, buyer)
    assert x.post(f"/v1/services/{svc}/stop", buyer).status_code == 200
    r = _key(x, buyer, svc)
    assert r.status_code == 409 and "stopped" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 101},
        {"name": "a", "rpm": 0},
        {"name": "a", "rpm": 1_000_001},
        {"name": "a", "tokens_per_day": 0},
        {"name": "a", "tokens_per_day": 10**12 + 1},
        {"name": "a", "rpm": "60"},
        {"name": "a", "extra": 1},
    ],
)
def test_bad_key_requests_are_422(module_exchange: Any, body: dict[str, Any]) -> None:
    x = module_exchange
    buyer = x.tenant(f"v-{len(x.tenants)}", "buyer")
    svc = _service(x, buyer)
    r = x.post(f"/v1/services/{svc}/keys", buyer, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
