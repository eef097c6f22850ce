"""The exchange's own inference gateway (``suanli up``): an OpenAI client sends a chat
completion to the exchange, the gateway routes it to the replica the round placed (a
protocol-level stand-in upstream on loopback, not an inference engine), meters the tokens
the upstream reported, and a revoked key is refused at once.

The official ``openai`` client speaks to the in-process app through the test client (an
``httpx.Client`` on the ASGI app); the gateway reaches the stand-in over real sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from suanli.engines.standin import StandinConfig, expected_usage, serve_standin_in_thread

from .conftest import Harness, make_harness

SPEC: dict[str, Any] = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 5},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_input_tokens": 2,
    "bid_cny_per_m_cached_input_tokens": 0.5,
    "bid_cny_per_m_output_tokens": 20,
    "command": "python -m suanli.engines.standin --port $PORT",
}
MESSAGES = [{"role": "user", "content": "what is the capital of Gansu"}]


@pytest.fixture
def x(tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(f"sqlite:///{tmp_path / 'exchange.db'}", tmp_path, gateway_enabled=True)


@pytest.fixture
def upstream() -> Iterator[str]:
    with serve_standin_in_thread(StandinConfig(ttft_ms=1, tpot_ms=0.5, cached_fraction=0.5)) as (
        url,
        _,
    ):
        yield url


def _serve(x: Harness, endpoint: str) -> tuple[dict[str, str], dict[str, Any]]:
    """A Shanghai site's agent, a buyer's service placed there, its replica running at
    ``endpoint``."""
    seller = x.tenant("dc", "seller")
    body = {
        "site_id": "site-a",
        "backend": "local",
        "host": "test-host",
        "city": "Shanghai",
        "reserve_cny_per_gpu_hour": 10.0,
        "pools": [{"name": "h100", "gpu_model": "H100", "gpu_count": 8, "gpus_per_node": 8}],
        "held": [],
    }
    r = x.client.post("/v1/agent/register", headers=seller, json=body)
    assert r.status_code == 200, r.text
    session = r.json()["session"]
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    r = x.post("/v1/services", buyer, SPEC)
    assert r.status_code == 201, r.text
    x.clear()
    leases = x.client.post(
        "/v1/agent/leases",
        headers=seller,
        json={"site_id": "site-a", "session": session, "kinds": ["job", "replica"]},
    ).json()
    for lease in leases:
        report = {
            "allocation_id": lease["allocation_id"],
            "lease_token": lease["lease_token"],
            "state": "running",
            "endpoint": endpoint,
        }
        assert x.post("/v1/agent/reports", seller, report).status_code == 200
    healthy = [
        {"allocation_id": lease["allocation_id"], "health": "healthy", "endpoint": endpoint}
        for lease in leases
    ]
    beat = {"site_id": "site-a", "session": session, "replicas": healthy}
    assert x.client.post("/v1/agent/heartbeat", headers=seller, json=beat).status_code == 200
    return buyer, r.json()


def _key(x: Harness, buyer: dict[str, str], service_id: str) -> dict[str, Any]:
    r = x.post(f"/v1/services/{service_id}/keys", buyer, {"name": "app-1"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _client(x: Harness, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=x.client, max_retries=0
    )


def test_a_chat_completion_through_the_exchange_is_routed_metered_and_revocable(
    x: Harness, upstream: str, wait_until: Callable[..., None]
) -> None:
    buyer, svc = _serve(x, upstream)
    key = _key(x, buyer, svc["id"])
    client = _client(x, key["key"])

    def served() -> bool:
        try:
            return [m.id for m in client.models.list().data] == ["chat"]
        except openai.APIStatusError:
            return False  # the gateway has not seen the key yet

    wait_until(served, 10, "the gateway to learn the new key")
    done = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=7)  # type: ignore[arg-type]
    want = expected_usage({"messages": MESSAGES, "max_tokens": 7}, chat=True, cached_fraction=0.5)
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (
        want["prompt_tokens"],
        7,
    )
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=5,
        stream=True,  # type: ignore[arg-type]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text

    def usage() -> list[dict[str, Any]]:
        r = x.get("/v1/token-usage", buyer, group_by="key")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    wait_until(lambda: sum(u["requests"] for u in usage()) == 2, 10, "usage to be reported")
    [row] = usage()
    cached = want["prompt_tokens_details"]["cached_tokens"]
    assert row["key_id"] == key["id"]
    assert row["output_tokens"] == 7 + 5
    assert row["cached_input_tokens"] == 2 * cached
    assert row["input_tokens"] == 2 * (want["prompt_tokens"] - cached)

    metrics = x.client.get("/metrics").text
    assert 'suanli_gateway_ttft_seconds_count{city="*",service="chat"}' in metrics or (
        "suanli_gateway_ttft_seconds_count" in metrics and 'service="chat"' in metrics
    )
    assert key["id"] not in metrics

    assert x.client.delete(f"/v1/keys/{key['id']}", headers=buyer).status_code == 204

    def refused() -> bool:
        try:
            client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=1)  # type: ignore[arg-type]
        except openai.AuthenticationError:
            return True
        return False

    wait_until(refused, 2, "the revoked key to be refused")


def test_an_unknown_key_gets_401_in_the_openai_shape(
    x: Harness, wait_until: Callable[..., None]
) -> None:
    def answer() -> Any:
        return x.client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer sk-suanli-nope"},
            json={"model": "chat", "messages": MESSAGES},
        )

    # 503 until the gateway has its first state from the exchange
    wait_until(lambda: answer().status_code != 503, 10, "the gateway's first state")
    r = answer()
    assert r.status_code == 401
    assert set(r.json()["error"]) >= {"message", "type"}
