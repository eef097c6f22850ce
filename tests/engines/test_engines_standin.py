"""The stand-in upstream speaks the OpenAI protocol exactly as the official client expects:
models, chat and text completions, streaming or not, with the usage its rules promise."""

from __future__ import annotations

import math
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from suanli.agent.replicas import free_port
from suanli.engines.standin import (
    DEFAULT_MAX_TOKENS,
    MESSAGE_OVERHEAD,
    StandinApp,
    StandinConfig,
    expected_usage,
    prompt_tokens,
    serve_standin_in_thread,
    standin_command,
)

FAST = StandinConfig(model="tiny-chat", ttft_ms=0.0, tpot_ms=0.0)
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "say three words please"},
]


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[str, StandinApp]]:
    with serve_standin_in_thread(FAST) as served:
        yield served


@pytest.fixture
def client(standin: tuple[str, StandinApp]) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin[0] + "/v1", api_key="x", max_retries=0)


def _usage(obj: Any) -> dict[str, Any]:
    assert obj.usage is not None
    got = obj.usage.model_dump(exclude_none=True)
    return {k: v for k, v in got.items() if k != "prompt_tokens_details"} | {
        "prompt_tokens_details": {"cached_tokens": obj.usage.prompt_tokens_details.cached_tokens}
    }


def test_prompt_token_rules() -> None:
    assert prompt_tokens({"messages": MESSAGES}, chat=True) == 3 + 4 + 2 * MESSAGE_OVERHEAD
    parts = [{"type": "text", "text": "a b"}, {"type": "text", "text": "c"}]
    assert prompt_tokens({"messages": [{"role": "user", "content": parts}]}, chat=True) == 7
    assert prompt_tokens({"prompt": "one two  three\nfour"}, chat=False) == 4
    assert prompt_tokens({"prompt": ["a b", "c"]}, chat=False) == 3
    assert prompt_tokens({"prompt": [5, 6, 7]}, chat=False) == 3
    usage = expected_usage(
        {"prompt": "a b c d e f g", "max_tokens": 2}, chat=False, cached_fraction=0.5
    )
    assert usage == {
        "prompt_tokens": 7,
        "completion_tokens": 2,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 3},
    }


def test_models_and_health(standin: tuple[str, StandinApp], client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny-chat"]
    assert httpx.get(standin[0] + "/health").status_code == 200
    assert httpx.get(standin[0] + "/nowhere").status_code == 404


def test_chat_completion_honours_max_tokens(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=5)
    assert reply.object == "chat.completion"
    assert reply.model == "tiny-chat"
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert len(choice.message.content.split()) == 5
    assert _usage(reply) == expected_usage({"messages": MESSAGES, "max_tokens": 5}, chat=True)


def test_default_and_completion_token_limits(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="any", messages=MESSAGES)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == DEFAULT_MAX_TOKENS
    reply = client.chat.completions.create(model="any", messages=MESSAGES, max_completion_tokens=3)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="any",
        messages=MESSAGES,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *with_choices, last = chunks
    assert last.choices == []
    assert _usage(last) == expected_usage({"messages": MESSAGES, "max_tokens": 4}, chat=True)
    assert all(c.usage is None for c in with_choices)
    assert with_choices[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert len(text.split()) == 4
    assert [c.choices[0].finish_reason for c in with_choices][-1] == "length"
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2, stream=True)
    )
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert len(chunks) == 1 + 2 + 1  # role, two tokens, finish


def test_text_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="any", prompt="once upon a time", max_tokens=3)
    assert reply.object == "text_completion"
    assert len(reply.choices[0].text.split()) == 3
    assert _usage(reply) == expected_usage(
        {"prompt": "once upon a time", "max_tokens": 3}, chat=False
    )
    chunks = list(
        client.completions.create(
            model="any",
            prompt=["once upon", "a time"],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 4
    assert chunks[-1].usage.completion_tokens == 6
    text = "".join(c.choices[0].text for c in chunks[:-1])
    assert len(text.split()) == 6


def test_bad_requests_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="any", messages=[], max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=-1)


def test_cached_fraction_and_stats() -> None:
    config = StandinConfig(ttft_ms=0.0, tpot_ms=0.0, cached_fraction=0.25)
    with serve_standin_in_thread(config) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2)
        assert reply.usage is not None
        prompt = reply.usage.prompt_tokens
        assert reply.usage.prompt_tokens_details is not None
        assert reply.usage.prompt_tokens_details.cached_tokens == math.floor(prompt * 0.25)
        stats = httpx.get(url + "/standin/stats").json()
    assert stats == {
        "requests": 1,
        "failures": 0,
        "rejected": 0,
        "in_flight": 0,
        "max_in_flight": 1,
        "prompt_tokens": prompt,
        "completion_tokens": 2,
    }
    assert app.stats.requests == 1


def test_fail_rate_gives_5xx_but_health_stays_up() -> None:
    with serve_standin_in_thread(StandinConfig(fail_rate=1.0, fail_status=503)) as (url, app):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="any", messages=MESSAGES, stream=True)
        assert err.value.status_code == 503
        assert httpx.get(url + "/health").status_code == 200
        assert len(client.models.list().data) == 1
    assert app.stats.failures == 1


def test_fail_rate_is_a_seeded_fraction() -> None:
    config = StandinConfig(ttft_ms=0.0, tpot_ms=0.0, fail_rate=0.5, seed=7)
    body = {"model": "m", "prompt": "x", "max_tokens": 1}
    with serve_standin_in_thread(config) as (url, app), httpx.Client(base_url=url) as http:
        codes = [http.post("/v1/completions", json=body).status_code for _ in range(200)]
    assert set(codes) == {200, 500}
    assert 60 < codes.count(500) < 140
    assert app.stats.failures == codes.count(500)


def test_latency_is_ttft_plus_tpot() -> None:
    with serve_standin_in_thread(StandinConfig(ttft_ms=40, tpot_ms=10)) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        reply = client.with_raw_response.completions.create(model="m", prompt="x", max_tokens=7)
        assert reply.elapsed.total_seconds() >= (40 + 6 * 10) / 1000


def test_command_line_serves_on_port(wait_until: Callable[..., None]) -> None:
    port = free_port()
    config = StandinConfig(model="cli-model", ttft_ms=0.0, tpot_ms=0.0)
    env = {**os.environ, "PORT": str(port)}
    proc = subprocess.Popen(["/bin/sh", "-c", "exec " + standin_command(config)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert proc.poll() is None, "the stand-in exited"
            try:
                return httpx.get(url + "/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "the stand-in's /health")
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["cli-model"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
