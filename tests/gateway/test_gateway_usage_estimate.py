"""Streams from engines that send no usage chunk (llama-cpp-python's server ignores
``stream_options.include_usage``): output tokens = content chunks seen, prompt tokens =
ceil(characters / 4), cached 0, counted in ``suanli_gateway_usage_estimated_total``.
Reported usage is used as reported; a stream cut short bills what was seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from suanli.gateway.upstream import Usage, estimate_usage

from .conftest import (
    KEY,
    SERVICE,
    GatewayUnderTest,
    Upstream,
    expected_usage,
    key_entry,
    replica,
    service,
    state,
)

Wait = Callable[[Callable[[], bool], float, str], None]
ESTIMATED = 'suanli_gateway_usage_estimated_total{city="Shanghai",service="chat-svc"}'


@pytest.mark.parametrize(
    ("doc", "prompt"),
    [
        ({"messages": [{"role": "user", "content": "hello"}]}, 2),  # 5 chars
        ({"messages": [{"content": "abcd"}, {"content": "efgh"}]}, 2),  # 8
        ({"messages": [{"content": [{"type": "text", "text": "abcdefghi"}]}]}, 3),  # 9
        ({"messages": [{"content": [{"type": "image_url", "image_url": {}}]}]}, 0),
        ({"messages": [{"role": "assistant", "content": None}]}, 0),
        ({"prompt": "once upon a time"}, 4),  # 16
        ({"prompt": ["abc", "de"]}, 2),  # 5
        ({"prompt": [1, 2, 3]}, 3),  # token ids count as they are
        ({"prompt": [[1, 2], [3]]}, 3),
        ({}, 0),
    ],
)
def test_the_prompt_estimate(doc: dict[str, Any], prompt: int) -> None:
    assert estimate_usage(doc, 7) == Usage(prompt=prompt, cached=0, output=7)


def stream(gw: GatewayUnderTest, path: str, body: dict[str, Any]) -> str:
    with (
        httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.stream("POST", gw.url + path, json={**body, "stream": True}) as resp,
    ):
        assert resp.status_code == 200
        return resp.read().decode()


def estimated(gw: GatewayUnderTest) -> float:
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        if line.startswith(ESTIMATED):
            return float(line.split()[-1])
    return 0.0


def usage_once(gw: GatewayUnderTest, until: Wait, requests: int) -> dict[str, int]:
    until(lambda: gw.link.usage_totals()["requests"] == requests, 10, "usage reports")
    return gw.link.usage_totals()


@pytest.fixture
def llama(make_upstream: Callable[[], Upstream]) -> Upstream:
    up = make_upstream()
    up.behaviour.usage_chunk = False
    return up


@pytest.fixture
def gw(llama: Upstream, make_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    return make_gateway(state([service([replica("r1", llama.url)])], [key_entry()]))


def test_a_chat_stream_without_usage_is_estimated_and_counted(
    gw: GatewayUnderTest, until: Wait
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},  # 8 chars
        {"role": "user", "content": "hello there friend"},  # 18
    ]
    text = stream(gw, "/v1/chat/completions", {"model": SERVICE, "messages": messages})
    assert '"usage"' not in text and text.count("tok") == 5
    totals = usage_once(gw, until, 1)
    assert (totals["input"], totals["cached"], totals["output"]) == (7, 0, 5)  # ceil(26/4)
    assert estimated(gw) == 1.0


def test_a_completion_stream_without_usage_is_estimated(gw: GatewayUnderTest, until: Wait) -> None:
    stream(gw, "/v1/completions", {"model": SERVICE, "prompt": "once upon a time", "max_tokens": 3})
    totals = usage_once(gw, until, 1)
    assert (totals["input"], totals["cached"], totals["output"]) == (4, 0, 3)
    assert estimated(gw) == 1.0


def test_the_client_asking_for_usage_changes_nothing_the_engine_does_not_send(
    gw: GatewayUnderTest, until: Wait
) -> None:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0) as c:
        chunks = list(
            c.chat.completions.create(
                model=SERVICE,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=2,
            )
        )
    assert all(ch.usage is None for ch in chunks)
    totals = usage_once(gw, until, 1)
    assert (totals["input"], totals["output"]) == (1, 2)


def test_a_stream_cut_short_without_usage_bills_what_was_seen_unestimated(
    llama: Upstream, gw: GatewayUnderTest, until: Wait
) -> None:
    llama.behaviour.die_after = 2
    text = stream(gw, "/v1/chat/completions", {"model": SERVICE, "messages": [{"content": "x"}]})
    assert "replica failed" in text
    totals = usage_once(gw, until, 1)
    assert (totals["errors"], totals["input"], totals["output"]) == (1, 0, 2)
    assert estimated(gw) == 0.0


def test_reported_usage_is_used_as_reported(
    make_upstream: Callable[[], Upstream],
    make_gateway: Callable[..., GatewayUnderTest],
    until: Wait,
) -> None:
    up = make_upstream()
    gw = make_gateway(state([service([replica("r1", up.url)])], [key_entry()]))
    messages = [{"role": "user", "content": "hello there friend"}]
    stream(gw, "/v1/chat/completions", {"model": SERVICE, "messages": messages})
    totals = usage_once(gw, until, 1)
    want = expected_usage(3)
    assert (totals["input"], totals["cached"], totals["output"]) == (
        want["prompt"] - want["cached"],
        want["cached"],
        want["output"],
    )
    assert estimated(gw) == 0.0
