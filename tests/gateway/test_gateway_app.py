"""The gateway app end to end with the official ``openai`` client: answers, streams,
usage metered as the upstream reported it, metrics, keys and back-pressure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from .conftest import (
    KEY,
    SERVICE,
    GatewayUnderTest,
    Upstream,
    expected_usage,
    key_entry,
    replica,
    route,
    service,
    state,
)

Wait = Callable[[Callable[[], bool], float, str], None]
MESSAGES = [{"role": "user", "content": "say three words"}]  # 3 words → prompt 6, cached 2


@pytest.fixture
def upstream(make_upstream: Callable[[], Upstream]) -> Upstream:
    return make_upstream()


@pytest.fixture
def gw(upstream: Upstream, make_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    svc = service([replica("r1", upstream.url)])
    return make_gateway(state([svc], [key_entry()]))


@pytest.fixture
def client(gw: GatewayUnderTest) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


def metered(gw: GatewayUnderTest, until: Wait, requests: int) -> dict[str, int]:
    until(lambda: gw.link.usage_totals()["requests"] >= requests, 10, "usage reports")
    return gw.link.usage_totals()


def test_chat_completion_and_its_usage_metered(
    gw: GatewayUnderTest, client: openai.OpenAI, until: Wait
) -> None:
    answer = client.chat.completions.create(model=SERVICE, messages=MESSAGES, max_tokens=4)
    assert answer.choices[0].message.content == "tok0 tok1 tok2 tok3"
    u = expected_usage(3, 4)
    assert answer.usage is not None and answer.usage.prompt_tokens == u["prompt"]
    totals = metered(gw, until, 1)
    assert totals == {
        "requests": 1,
        "errors": 0,
        "input": u["prompt"] - u["cached"],
        "cached": u["cached"],
        "output": 4,
    }
    (report,) = gw.link.reports.values()
    assert report.gateway == "edge-test" and report.usage[0].city == "Shanghai"
    assert report.usage[0].key_id == "k1" and report.demand[0].slo_met == 1


def test_streamed_chat_relays_tokens_and_meters_the_hidden_usage_chunk(
    gw: GatewayUnderTest, client: openai.OpenAI, upstream: Upstream, until: Wait
) -> None:
    stream = client.chat.completions.create(
        model=SERVICE, messages=MESSAGES, max_tokens=6, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"tok{i}" for i in range(6))
    assert all(c.usage is None for c in chunks)  # the client did not ask for it
    assert upstream.behaviour.bodies[-1]["stream_options"] == {"include_usage": True}
    u = expected_usage(3, 6)
    totals = metered(gw, until, 1)
    assert (totals["input"], totals["cached"], totals["output"]) == (
        u["prompt"] - u["cached"],
        u["cached"],
        6,
    )


def test_a_client_asking_for_usage_gets_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=SERVICE,
            messages=MESSAGES,
            max_tokens=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 2
    assert usage[0].prompt_tokens_details is not None
    assert usage[0].prompt_tokens_details.cached_tokens == 2


def test_completions_streamed_and_not(
    gw: GatewayUnderTest, client: openai.OpenAI, until: Wait
) -> None:
    done = client.completions.create(model=SERVICE, prompt="one two", max_tokens=3)
    assert done.choices[0].text == "tok0 tok1 tok2"
    streamed = client.completions.create(model=SERVICE, prompt="one two", max_tokens=3, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "tok0 tok1 tok2"
    assert metered(gw, until, 2)["output"] == 6


def test_ttft_and_tpot_histograms_by_service_and_city_without_keys(
    gw: GatewayUnderTest, client: openai.OpenAI
) -> None:
    list(client.chat.completions.create(model=SERVICE, messages=MESSAGES, stream=True))
    text = httpx.get(gw.url + "/metrics").text
    for name in ("ttft", "tpot", "queue", "request"):
        line = next(
            ln for ln in text.splitlines() if ln.startswith(f"suanli_gateway_{name}_seconds_count")
        )
        assert 'service="chat-svc"' in line and 'city="Shanghai"' in line, line
    assert "k1" not in text and KEY not in text and "key" not in text.replace("keepalive", "")
    assert (
        'suanli_gateway_tokens_total{city="Shanghai",kind="output",service="chat-svc"} 5.0' in text
    )
    assert 'suanli_gateway_requests_total{city="Shanghai",service="chat-svc",status="200"}' in text


def test_models_lists_the_keys_service(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [SERVICE]


def test_unknown_and_revoked_keys_are_refused_at_once(gw: GatewayUnderTest) -> None:
    bad = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-nope", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=SERVICE, messages=MESSAGES)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as good:
        good.chat.completions.create(model=SERVICE, messages=MESSAGES)
        current = gw.link.current
        gw.publish(current.model_copy(update={"etag": "e2", "keys": []}))  # revoked
        with pytest.raises(openai.AuthenticationError) as err:
            good.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert err.value.status_code == 401


def test_another_services_name_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="someone-elses", messages=MESSAGES)
    assert err.value.code == "model_not_found"


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b'{"messages": []}', b"\xff\xfe", b"[" * 100_000]
)
def test_bad_bodies_are_400_in_the_openai_shape(gw: GatewayUnderTest, body: bytes) -> None:
    resp = httpx.post(
        gw.url + "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "code", "param"}


def test_requests_per_minute_limit(gw: GatewayUnderTest) -> None:
    current = gw.link.current
    gw.publish(current.model_copy(update={"etag": "e2", "keys": [key_entry(rpm=2)]}))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        for _ in range(2):
            c.chat.completions.create(model=SERVICE, messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as err:
            c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert int(err.value.response.headers["retry-after"]) >= 1


def test_tokens_per_day_limit_counts_this_gateways_usage(gw: GatewayUnderTest) -> None:
    current = gw.link.current
    limited = key_entry(tokens_per_day=100, tokens_today=90)
    gw.publish(current.model_copy(update={"etag": "e2", "keys": [limited]}))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        c.chat.completions.create(model=SERVICE, messages=MESSAGES)  # 6 + 5 tokens → 101
        with pytest.raises(openai.RateLimitError) as err:
            c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert err.value.body is not None and "tokens" in str(err.value.body)


def test_a_full_service_queues_then_answers_429_with_retry_after(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    up = make_upstream()
    up.behaviour.hold = threading.Event()
    svc = service([replica("r1", up.url, mc=1)], {"*": [route("p1", 1.0, rtt_ms=5)]}, ttft_ms=150.0)
    gw = make_gateway(state([svc], [key_entry()]))
    results: list[int] = []

    def first() -> None:
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": SERVICE, "messages": MESSAGES},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=20,
        )
        results.append(r.status_code)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert up.behaviour.entered.acquire(timeout=10)  # the one slot is taken
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
        with c, pytest.raises(openai.RateLimitError) as err:
            c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    finally:
        up.behaviour.hold.set()
        t.join(20)
    assert results == [200]
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.code == "capacity_exceeded"
    until(lambda: gw.link.demand_totals()["requests"] == 2, 10, "demand reports")
    demand = gw.link.demand_totals()
    assert (demand["requests"], demand["rejected"], demand["slo_total"]) == (2, 1, 1)
    text = httpx.get(gw.url + "/metrics").text
    assert 'suanli_gateway_queue_seconds_count{city="Shanghai",service="chat-svc"} 2.0' in text


def test_unknown_paths_and_methods_answer_in_the_openai_shape(gw: GatewayUnderTest) -> None:
    assert httpx.get(gw.url + "/v1/nothing").json()["error"]["message"].endswith("no such endpoint")
    resp = httpx.get(gw.url + "/v1/chat/completions")
    assert resp.status_code == 405 and set(resp.json()["error"]) == {
        "message",
        "type",
        "code",
        "param",
    }


@pytest.mark.parametrize("trusted", [True, False])
def test_the_city_header_counts_only_from_trusted_edges(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
    trusted: bool,
) -> None:
    from suanli.gateway import parse_networks

    near, far = make_upstream(), make_upstream()
    reps = [replica("rb", near.url, pool="B"), replica("ra", far.url, pool="A")]
    svc = service(reps, {"Beijing": [route("B", 1.0)], "*": [route("A", 1.0)]})
    edges = parse_networks(["127.0.0.0/8"] if trusted else ["10.0.0.0/8"])
    gw = make_gateway(state([svc], [key_entry()]), city=None, trusted_edges=edges)
    with openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key=KEY,
        max_retries=0,
        default_headers={"x-suanli-city": "Beijing"},
    ) as c:
        c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert (len(near.behaviour.bodies), len(far.behaviour.bodies)) == (
        (1, 0) if trusted else (0, 1)
    )
    until(lambda: gw.link.usage_totals()["requests"] == 1, 10, "usage reports")
    (report,) = gw.link.reports.values()
    assert report.usage[0].city == ("Beijing" if trusted else "*")
