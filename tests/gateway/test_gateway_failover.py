"""Failover: a replica that refuses connections or answers 503 is skipped before anything
reaches the client; one that dies mid-stream ends the client's stream with an error and
is never retried; repeated failures open its breaker. When every replica the city's
routes list is down, a replica beyond the SLO answers (judged not meeting it); when they
are merely full, the request queues for them and gets its 429."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import openai
import pytest

from suanli.gateway.breaker import State

from .conftest import (
    KEY,
    SERVICE,
    GatewayUnderTest,
    Upstream,
    free_port,
    key_entry,
    metered_demand,
    replica,
    route,
    service,
    state,
)

MESSAGES = [{"role": "user", "content": "hello"}]
Wait = Callable[[Callable[[], bool], float, str], None]


def two_pools(first: str, second: str):  # type: ignore[no-untyped-def]
    """``first`` is the planned pool (weight 9), ``second`` the lighter one."""
    reps = [replica("bad", first, pool="A"), replica("good", second, pool="B")]
    return service(reps, {"Shanghai": [route("A", 9.0), route("B", 1.0)]})


def client_for(gw: GatewayUnderTest) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)


def test_a_refused_connection_fails_over_to_the_next_replica(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    good = make_upstream()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = make_gateway(state([two_pools(dead, good.url)], [key_entry()]))
    with client_for(gw) as c:
        for _ in range(3):
            answer = c.chat.completions.create(model=SERVICE, messages=MESSAGES, max_tokens=2)
            assert answer.choices[0].message.content == "tok0 tok1"
        assert gw.gateway.breaker.state("bad") is State.OPEN  # 3 consecutive failures
        list(c.chat.completions.create(model=SERVICE, messages=MESSAGES, stream=True))
    assert len(good.behaviour.bodies) == 4
    until(lambda: gw.link.usage_totals()["requests"] == 4, 10, "usage reports")
    assert gw.link.usage_totals()["errors"] == 0


def test_a_503_is_retried_on_the_next_replica(
    make_upstream: Callable[[], Upstream], make_gateway: Callable[..., GatewayUnderTest]
) -> None:
    busy, good = make_upstream(), make_upstream()
    busy.behaviour.status = 503
    gw = make_gateway(state([two_pools(busy.url, good.url)], [key_entry()]))
    with client_for(gw) as c:
        list(c.chat.completions.create(model=SERVICE, messages=MESSAGES, stream=True))
    assert len(busy.behaviour.bodies) == 1 and len(good.behaviour.bodies) == 1


def test_no_replica_reachable_is_a_503(make_gateway: Callable[..., GatewayUnderTest]) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    gw = make_gateway(state([two_pools(*dead)], [key_entry()]))
    with client_for(gw) as c, pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert err.value.status_code == 503


def test_a_replica_dying_mid_stream_ends_the_stream_with_an_error_and_no_retry(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    dying, good = make_upstream(), make_upstream()
    dying.behaviour.die_after = 2
    gw = make_gateway(state([two_pools(dying.url, good.url)], [key_entry()]))
    seen: list[str] = []
    with client_for(gw) as c:
        stream = c.chat.completions.create(model=SERVICE, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="replica failed"):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    seen.append(chunk.choices[0].delta.content)
    assert seen == ["tok0", " tok1"]  # what was streamed stays; nothing repeated
    assert len(dying.behaviour.bodies) == 1 and good.behaviour.bodies == []
    until(lambda: gw.link.usage_totals()["requests"] == 1, 10, "usage reports")
    totals = gw.link.usage_totals()
    assert totals["errors"] == 1 and totals["output"] == 2  # the tokens that were seen


def test_a_client_leaving_mid_stream_frees_the_slot_and_bills_what_was_seen(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    import httpx

    up = make_upstream()
    up.behaviour.token_gap_s = 0.05
    gw = make_gateway(state([service([replica("r1", up.url)])], [key_entry()]))
    body = {"model": SERVICE, "messages": MESSAGES, "max_tokens": 40, "stream": True}
    with (
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.stream("POST", gw.url + "/v1/chat/completions", json=body) as resp,
    ):
        for line in resp.iter_lines():
            if "tok1" in line:
                break  # leave after two tokens
    until(lambda: gw.link.usage_totals()["requests"] == 1, 10, "usage reports")
    totals, demand = gw.link.usage_totals(), gw.link.demand_totals()
    assert totals["errors"] == 1 and 2 <= totals["output"] < 40
    assert demand["slo_total"] == 0  # the client's doing, not the service's
    assert gw.gateway.admission.in_flight == {}


def near_and_beyond(near: str, beyond: str, **kw: object):  # type: ignore[no-untyped-def]
    """Shanghai's routes list only pool A (r1); pool B (r2) is only in ``"*"``."""
    reps = [replica("r1", near, pool="A", **kw), replica("r2", beyond, pool="B")]
    routes = {"Shanghai": [route("A", 1.0)], "*": [route("A", 1.0, 0), route("B", 0, 0)]}
    return service(reps, routes, ttft_ms=150.0)


def fallbacks_counted(gw: GatewayUnderTest) -> str:
    text = httpx.get(gw.url + "/metrics").text
    return next(
        (line for line in text.splitlines() if line.startswith("suanli_gateway_slo_fallback_t")),
        "",
    )


@pytest.mark.parametrize("stream", [False, True])
def test_a_dead_near_replica_fails_over_beyond_the_slo_and_is_counted(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
    stream: bool,
) -> None:
    beyond = make_upstream()
    dead = f"http://127.0.0.1:{free_port()}"
    gw = make_gateway(state([near_and_beyond(dead, beyond.url)], [key_entry()]))
    with client_for(gw) as c:
        raw = c.chat.completions.with_raw_response.create(
            model=SERVICE, messages=MESSAGES, max_tokens=2, stream=stream
        )
        answer = raw.parse()
        if stream:
            list(answer)  # type: ignore[call-overload]
    assert raw.status_code == 200
    assert raw.headers["x-suanli-pool"] == "B" and raw.headers["x-suanli-replica"] == "r2"
    assert raw.headers["x-suanli-city"] == "Shanghai"
    assert len(beyond.behaviour.bodies) == 1
    demand = metered_demand(gw, until, 1)
    assert (demand["slo_total"], demand["slo_met"]) == (1, 0)  # fast, yet beyond the SLO
    assert gw.link.usage_totals()["errors"] == 0
    line = 'suanli_gateway_slo_fallback_total{city="Shanghai",service="chat-svc"} 1.0'
    assert fallbacks_counted(gw) == line


def test_a_healthy_near_replica_meets_the_slo_and_no_fallback_is_counted(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    near, beyond = make_upstream(), make_upstream()
    gw = make_gateway(state([near_and_beyond(near.url, beyond.url)], [key_entry()]))
    with client_for(gw) as c:
        raw = c.chat.completions.with_raw_response.create(model=SERVICE, messages=MESSAGES)
    assert raw.headers["x-suanli-pool"] == "A" and beyond.behaviour.bodies == []
    demand = metered_demand(gw, until, 1)
    assert (demand["slo_total"], demand["slo_met"]) == (1, 1)
    assert fallbacks_counted(gw) == ""


def test_skipping_an_unhealthy_replica_costs_no_attempt(
    make_upstream: Callable[[], Upstream], make_gateway: Callable[..., GatewayUnderTest]
) -> None:
    near, beyond = make_upstream(), make_upstream()
    svc = near_and_beyond(near.url, beyond.url, health="unhealthy")
    gw = make_gateway(state([svc], [key_entry()]), max_attempts=1)
    with client_for(gw) as c:
        raw = c.chat.completions.with_raw_response.create(model=SERVICE, messages=MESSAGES)
    assert raw.headers["x-suanli-replica"] == "r2"
    assert near.behaviour.bodies == [] and len(beyond.behaviour.bodies) == 1


def test_the_attempt_cap_counts_replicas_called(
    make_upstream: Callable[[], Upstream], make_gateway: Callable[..., GatewayUnderTest]
) -> None:
    beyond = make_upstream()
    dead = f"http://127.0.0.1:{free_port()}"
    gw = make_gateway(state([near_and_beyond(dead, beyond.url)], [key_entry()]), max_attempts=1)
    with client_for(gw) as c, pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    assert err.value.status_code == 503 and beyond.behaviour.bodies == []
    assert "x-suanli-replica" not in err.value.response.headers  # no replica answered


def test_a_full_near_replica_queues_then_429_rather_than_spill_beyond_the_slo(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    near, beyond = make_upstream(), make_upstream()
    near.behaviour.hold = threading.Event()
    gw = make_gateway(state([near_and_beyond(near.url, beyond.url, mc=1)], [key_entry()]))
    statuses: list[int] = []

    def first() -> None:
        with client_for(gw) as c:
            raw = c.chat.completions.with_raw_response.create(model=SERVICE, messages=MESSAGES)
            statuses.append(raw.status_code)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert near.behaviour.entered.acquire(timeout=10)  # r1's one slot is taken
        with client_for(gw) as c, pytest.raises(openai.RateLimitError) as err:
            c.chat.completions.create(model=SERVICE, messages=MESSAGES)
    finally:
        near.behaviour.hold.set()
        t.join(20)
    assert statuses == [200] and beyond.behaviour.bodies == []
    assert err.value.code == "capacity_exceeded"
    assert "x-suanli-replica" not in err.value.response.headers
    demand = metered_demand(gw, until, 2)
    assert (demand["rejected"], demand["slo_total"]) == (1, 1)
    assert fallbacks_counted(gw) == ""
