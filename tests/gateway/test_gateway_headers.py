"""Every answer that came from a replica names it: ``x-suanli-replica`` (allocation id),
``x-suanli-pool`` and ``x-suanli-city`` (the demand city it was routed as) — streamed or
not, successes and the replica's own errors alike; the gateway's own answers do not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from .conftest import (
    KEY,
    SERVICE,
    GatewayUnderTest,
    Upstream,
    key_entry,
    replica,
    route,
    service,
    state,
)

MESSAGES = [{"role": "user", "content": "hello"}]
NAMED = {"x-suanli-replica": "r7", "x-suanli-pool": "pool-9", "x-suanli-city": "Shanghai"}


def named(headers: httpx.Headers) -> dict[str, str]:
    return {k: headers[k] for k in NAMED if k in headers}


@pytest.fixture
def upstream(make_upstream: Callable[[], Upstream]) -> Upstream:
    return make_upstream()


@pytest.fixture
def gw(upstream: Upstream, make_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    svc = service([replica("r7", upstream.url, pool="pool-9")])
    return make_gateway(state([svc], [key_entry()]))


@pytest.fixture
def client(gw: GatewayUnderTest) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def test_a_chat_answer_names_its_replica(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=SERVICE, messages=MESSAGES)
    assert named(raw.headers) == NAMED
    assert raw.parse().choices[0].message.content


def test_a_streamed_answer_names_its_replica(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=SERVICE, messages=MESSAGES, stream=True
    )
    assert named(raw.headers) == NAMED
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert len([c for c in raw.parse() if c.choices and c.choices[0].delta.content]) == 5


def test_a_completion_streamed_and_not_over_plain_http(gw: GatewayUnderTest) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=gw.url, headers=auth) as http:
        body = {"model": SERVICE, "prompt": "once upon"}
        assert named(http.post("/v1/completions", json=body).headers) == NAMED
        with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as resp:
            assert named(resp.headers) == NAMED
            assert "[DONE]" in resp.read().decode()


@pytest.mark.parametrize("status", [400, 500])
def test_a_replicas_error_passed_through_names_it(
    upstream: Upstream, gw: GatewayUnderTest, status: int
) -> None:
    upstream.behaviour.status = status
    for stream in (False, True):
        resp = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": SERVICE, "messages": MESSAGES, "stream": stream},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert resp.status_code == status and resp.json()["error"]["message"] == "busy"
        assert named(resp.headers) == NAMED


def test_the_gateways_own_answers_name_no_replica(gw: GatewayUnderTest) -> None:
    bad_key = httpx.post(gw.url + "/v1/chat/completions", json={"model": SERVICE})
    assert bad_key.status_code == 401 and named(bad_key.headers) == {}
    unknown = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "nope", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert unknown.status_code == 404 and named(unknown.headers) == {}


def test_the_city_header_says_how_the_request_was_routed(
    make_upstream: Callable[[], Upstream], make_gateway: Callable[..., GatewayUnderTest]
) -> None:
    up = make_upstream()
    svc = service([replica("r1", up.url, pool="A")], {"*": [route("A", 1.0)]})
    gw = make_gateway(state([svc], [key_entry()]), city=None)  # no trusted edges
    resp = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": SERVICE, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {KEY}", "x-suanli-city": "Beijing"},
    )
    assert named(resp.headers) == {
        "x-suanli-replica": "r1",
        "x-suanli-pool": "A",
        "x-suanli-city": "*",
    }


def test_a_timeout_waiting_for_a_replica_names_it(
    make_upstream: Callable[[], Upstream], make_gateway: Callable[..., GatewayUnderTest]
) -> None:
    import threading

    up = make_upstream()
    up.behaviour.hold = threading.Event()
    svc = service([replica("r7", up.url, pool="pool-9")])
    gw = make_gateway(state([svc], [key_entry()]), read_timeout_s=0.2)
    try:
        resp = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": SERVICE, "messages": MESSAGES},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    finally:
        up.behaviour.hold.set()
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_failed"
    assert named(resp.headers) == NAMED
