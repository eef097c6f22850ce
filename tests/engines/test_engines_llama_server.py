"""A real llama-cpp-python server, started as a replica would be (the command line of
``llama_server_command`` under ``/bin/sh`` with ``$PORT`` set), serves the tiny model to the
official OpenAI client: models, chat and text completions, streaming and not."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from suanli.agent.replicas import free_port
from suanli.engines.llama import HEALTH_PATH, llama_server_command
from suanli.engines.tiny_gguf import write_tiny_llama

MESSAGES: list[Any] = [{"role": "user", "content": "tell me about the sea"}]
ALIAS = "tiny-chat"


def test_command_line_expands_port_and_quotes_paths() -> None:
    cmd = llama_server_command("/models/my model.gguf", n_ctx=256, python="/py/bin/python")
    assert cmd.startswith("/py/bin/python -m llama_cpp.server --model '/models/my model.gguf' ")
    assert "--model_alias 'my model'" in cmd
    assert "--n_ctx 256" in cmd
    assert "--interrupt_requests False" in cmd
    assert cmd.endswith(" --port $PORT")
    assert llama_server_command("m.gguf", port=8123, alias="x").endswith(" --port 8123")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def llama_server(
    tmp_path_factory: pytest.TempPathFactory,
    require: Callable[..., None],
    wait_until: Callable[..., None],
) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of a llama-cpp-python server on the tiny
    model, stopped at the end of the module."""
    require("llama")
    d = tmp_path_factory.mktemp("llama")
    model = write_tiny_llama(d / "tiny.gguf")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = d / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + llama_server_command(model, alias=ALIAS)],
            env={**os.environ, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the llama server exited: {_tail(log)}")
            try:
                return httpx.get(url + HEALTH_PATH, timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_until(healthy, 120, f"the llama server's {HEALTH_PATH} at {url}")
        yield url
    finally:
        _stop(proc)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


@pytest.fixture
def client(llama_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=llama_server + "/v1", api_key="x", max_retries=0, timeout=60)


@pytest.mark.slow
@pytest.mark.requires("llama")
def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [ALIAS]


@pytest.mark.slow
@pytest.mark.requires("llama")
def test_chat_completion_with_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=ALIAS, messages=MESSAGES, max_tokens=8)
    assert reply.model == ALIAS
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 8
    assert reply.usage.prompt_tokens > len(MESSAGES[0]["content"].split())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8


@pytest.mark.slow
@pytest.mark.requires("llama")
def test_streaming_chat_completion(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=ALIAS,
            messages=MESSAGES,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in with_choices if c.choices[0].delta.content]
    assert len(contents) == 8  # one chunk per token: the tiny model emits whole pieces
    assert with_choices[-1].choices[0].finish_reason == "length"
    # llama-cpp-python 0.3.36 ignores stream_options: a stream reports no usage, so a
    # gateway counts streamed tokens itself (or uses the prompt's tokenization).
    assert all(c.usage is None for c in chunks)


@pytest.mark.slow
@pytest.mark.requires("llama")
def test_text_completion_with_usage(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=ALIAS, prompt="the sea is", max_tokens=5)
    assert reply.choices[0].text
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 5)
    chunks = list(
        client.completions.create(model=ALIAS, prompt="the sea", max_tokens=5, stream=True)
    )
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) == 5
