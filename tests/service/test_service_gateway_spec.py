"""Services for serving inference: token bids, cached share and replica bounds in the spec,
changing a running service (PATCH), and what a round may hold for it.

Market: one Shanghai site with an H100 pool of 2 nodes × 8 GPUs at a reserve of 10
yuan/GPU-h. Llama-3.1-8B at 1000 prompt / 250 output tokens under TTFT 2 s, TPOT 100 ms
serves ≈ 18.7 requests/s per H100.
"""

from __future__ import annotations

from typing import Any

import pytest

SPEC: dict[str, Any] = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 10},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
}


def _setup(x: Any, fund_cny: float = 10_000) -> tuple[dict[str, str], dict[str, str], str]:
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=fund_cny)
    return seller, buyer, x.market(seller)


def _service(x: Any, buyer: dict[str, str], **over: Any) -> dict[str, Any]:
    r = x.post("/v1/services", buyer, {**SPEC, **over})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_spec_takes_token_bids_cached_share_and_replica_bounds(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    plain = _service(x, buyer)
    assert (
        plain["bid_cny_per_m_input_tokens"],
        plain["bid_cny_per_m_cached_input_tokens"],
        plain["cached_fraction"],
        plain["min_replicas"],
        plain["max_replicas"],
        plain["planned_demand_rps"],
        plain["measured_rps"],
    ) == (0.0, 0.0, 0.0, 0, None, {}, {})
    full = _service(
        x,
        buyer,
        tokens={"prompt": 1000, "output": 250, "cached_fraction": 0.4},
        bid_cny_per_m_input_tokens=2,
        bid_cny_per_m_cached_input_tokens=0.5,
        replicas={"min": 1, "max": 4},
    )
    got = x.get(f"/v1/services/{full['id']}", buyer).json()
    assert (
        got["bid_cny_per_m_input_tokens"],
        got["bid_cny_per_m_cached_input_tokens"],
        got["cached_fraction"],
        got["min_replicas"],
        got["max_replicas"],
    ) == (2.0, 0.5, 0.4, 1, 4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"replicas": {"min": 3, "max": 2}}, "body.replicas"),
        ({"replicas": {"max": 0}}, "body.replicas.max"),
        ({"replicas": {"min": -1}}, "body.replicas.min"),
        ({"tokens": {"prompt": 10, "output": 10, "cached_fraction": 1.5}}, "body.tokens"),
        ({"bid_cny_per_m_input_tokens": -1}, "body.bid_cny_per_m_input_tokens"),
        ({"bid_cny_per_m_cached_input_tokens": 1e9}, "body.bid_cny_per_m_cached"),
    ],
)
def test_bad_serving_terms_are_422_naming_the_field(
    sqlite_exchange: Any, change: dict[str, Any], field: str
) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    r = x.post("/v1/services", buyer, {**SPEC, **change})
    assert r.status_code == 422, r.text
    body = r.json()
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    if "min" in str(change) and "3" in str(change):
        assert "replicas.max (2) must be at least" in body["detail"]


def test_owner_patches_a_running_service_and_the_change_is_logged(exchange: Any) -> None:
    x = exchange
    _, buyer, _ = _setup(x)
    svc = _service(x, buyer)
    before = x.rt.serving_changes.count
    r = x.client.patch(
        f"/v1/services/{svc['id']}",
        headers=buyer,
        json={
            "demand_rps": {"shanghai": 5, "Beijing": 3},
            "bid_cny_per_m_output_tokens": 8,
            "bid_cny_per_m_input_tokens": 1.5,
            "bid_cny_per_m_cached_input_tokens": 0.25,
            "slo": {"ttft_ms": 1500, "tpot_ms": 80},
            "tokens": {"prompt": 800, "output": 200, "cached_fraction": 0.2},
            "replicas": {"min": 1, "max": 3},
        },
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["demand_rps"] == {"Shanghai": 5, "Beijing": 3}  # catalogue spellings
    assert (got["ttft_ms"], got["tpot_ms"], got["prompt_tokens"], got["cached_fraction"]) == (
        1500,
        80,
        800,
        0.2,
    )
    assert (got["bid_cny_per_m_input_tokens"], got["min_replicas"], got["max_replicas"]) == (
        1.5,
        1,
        3,
    )
    assert x.rt.serving_changes.count > before  # gateways see the new SLO at once
    events = x.get(f"/v1/services/{svc['id']}/why", buyer).json()["events"]
    updated = [e for e in events if e["kind"] == "updated"]
    assert len(updated) == 1
    assert updated[0]["data"]["changed"]["ttft_ms"] == [2000, 1500]
    assert "demand_rps" in updated[0]["reason"]

    # Only its owner: another buyer does not see it, an operator may not change it.
    other = x.tenant("rival", "buyer")
    one = {"demand_rps": {"Shanghai": 1}}
    assert x.client.patch(f"/v1/services/{svc['id']}", headers=other, json=one).status_code == 404
    assert (
        x.client.patch(f"/v1/services/{svc['id']}", headers=x.operator, json=one).status_code == 403
    )
    # Validated like a new service.
    for bad, status in (
        ({}, 422),
        ({"demand_rps": {"Atlantis": 3}}, 422),
        ({"demand_rps": {"Shanghai": 0}}, 422),
        ({"replicas": {"min": 2, "max": 1}}, 422),
        ({"colour": "red"}, 422),
    ):
        r = x.client.patch(f"/v1/services/{svc['id']}", headers=buyer, json=bad)
        assert r.status_code == status, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")

    # A stopped service cannot be changed.
    x.post(f"/v1/services/{svc['id']}/stop", buyer)
    r = x.client.patch(f"/v1/services/{svc['id']}", headers=buyer, json={"tokens": SPEC["tokens"]})
    assert r.status_code == 409 and "stopped" in r.json()["detail"]


def test_a_patch_takes_effect_at_the_next_round(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _, buyer, pool = _setup(x)
    # Bidding far below what a GPU costs: not placed.
    svc = _service(x, buyer, bid_cny_per_m_output_tokens=0.001)
    assert x.clear().services_placed == 0
    assert x.get(f"/v1/services/{svc['id']}", buyer).json()["replicas"] == []
    r = x.client.patch(
        f"/v1/services/{svc['id']}", headers=buyer, json={"bid_cny_per_m_output_tokens": 20}
    )
    assert r.status_code == 200
    assert x.clear().services_placed == 1
    got = x.get(f"/v1/services/{svc['id']}", buyer).json()
    assert [p["pool_id"] for p in got["replicas"]] == [pool]
    assert got["planned_demand_rps"] == {"Shanghai": 10.0}


def test_the_hold_values_long_prompts_at_the_input_bids(sqlite_exchange: Any) -> None:
    """8000 prompt tokens, 100 output, bid 4 yuan per M input tokens on a cache miss and 1
    on a hit, half of them cached, nothing for output: a request is worth
    (4000 × 4 + 4000 × 1) / 1e6 = 0.02 yuan, so 2 requests/s over the 0.25 h horizon may
    cost 0.02 × 2 × 900 = 36 yuan. A wallet of 10 yuan cannot cover that (valued by the
    output bid alone the service would look free)."""
    x = sqlite_exchange
    _, buyer, _ = _setup(x, fund_cny=10)
    svc = _service(
        x,
        buyer,
        demand_rps={"Shanghai": 2},
        tokens={"prompt": 8000, "output": 100, "cached_fraction": 0.5},
        slo={"ttft_ms": 3000, "tpot_ms": 100},
        bid_cny_per_m_output_tokens=0,
        bid_cny_per_m_input_tokens=4,
        bid_cny_per_m_cached_input_tokens=1,
    )
    assert x.clear().services_placed == 0
    why = x.get(f"/v1/services/{svc['id']}/why", buyer).json()
    [reason] = why["reasons"]
    # 36 yuan and the 2 fen the engine may round up.
    assert reason.startswith("funds: wallet has 10.00 yuan free, this service may cost up to 36.0")
