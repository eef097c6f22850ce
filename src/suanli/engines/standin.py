"""A protocol-level **stand-in** upstream: it speaks the OpenAI HTTP API, and nothing more.

It is *not* an inference engine. It answers ``/v1/chat/completions`` and
``/v1/completions`` (streaming or not) with made-up words, after a configurable time to
first token and time per output token, with usage that follows fixed rules so that
callers can predict it exactly. Load and fault tests and the gateway benchmark drive it
at hundreds of requests per second, where a real engine on a CPU would measure itself,
not the gateway; the end-to-end tests use the real engine (:mod:`suanli.engines.llama`).

The rules:

- **Prompt tokens**: the whitespace-separated words of every message's text plus
  :data:`MESSAGE_OVERHEAD` per message (chat); the words of the prompt(s), or the number
  of token ids given (completions). See :func:`prompt_tokens`.
- **Completion tokens**: exactly ``max_tokens`` (``max_completion_tokens`` for chat;
  default :data:`DEFAULT_MAX_TOKENS`), ``finish_reason`` ``"length"``; one word per token.
- **Cached tokens**: ``floor(prompt_tokens × cached_fraction)``, in
  ``usage.prompt_tokens_details.cached_tokens``.
- **Latency**: ``ttft_ms`` before the first token, ``tpot_ms`` between tokens (asyncio
  sleeps: a waiting request costs nothing).
- **Faults**: each inference request fails with ``fail_status`` (an OpenAI-style error
  body) with probability ``fail_rate``; ``/health`` and ``/v1/models`` never fail.
- Any ``model`` is accepted; answers name the configured one.

Streaming is the OpenAI wire format: ``data: {chunk}\\n\\n`` events — the role, one per
token, one with the ``finish_reason`` — then, when ``stream_options.include_usage`` is
true, a chunk with empty ``choices`` and the usage (every earlier chunk carrying
``"usage": null``), and ``data: [DONE]``.

``GET /standin/stats`` (and :attr:`StandinApp.stats`) counts requests, failures and the
peak number in flight, for tests that check what reached an upstream.

This module holds the config, the ASGI app (:class:`StandinApp`), the serving entry points
and the CLI; the token-counting rules and raw-ASGI reply helpers live in
:mod:`suanli.engines._openai_wire`, the uvicorn plumbing in :mod:`suanli.engines._serve`.

    python -m suanli.engines.standin --host 127.0.0.1 --port N [--ttft-ms 5] [--tpot-ms 1]
        [--model NAME] [--cached-fraction 0.0] [--fail-rate 0] [--fail-status 500] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from suanli.engines._openai_wire import (
    DEFAULT_MAX_TOKENS,
    MESSAGE_OVERHEAD,
    BadRequest,
    Receive,
    Scope,
    Send,
    error_body,
    expected_usage,
    json_bytes,
    lifespan,
    prompt_tokens,
    read_body,
    respond,
    respond_raw,
    token_text,
)
from suanli.engines._serve import serve_forever, serve_in_thread

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MESSAGE_OVERHEAD",
    "StandinApp",
    "StandinConfig",
    "StandinStats",
    "expected_usage",
    "main",
    "prompt_tokens",
    "serve_standin",
    "serve_standin_in_thread",
    "standin_command",
]


@dataclass(frozen=True)
class StandinConfig:
    """How the stand-in behaves (see the module's rules)."""

    model: str = "standin"
    ttft_ms: float = 5.0
    tpot_ms: float = 1.0
    cached_fraction: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 500
    seed: int | None = None  # of the fault draws; None: unseeded

    def __post_init__(self) -> None:
        if not 0.0 <= self.cached_fraction <= 1.0:
            raise ValueError(f"cached_fraction {self.cached_fraction} is not in [0, 1]")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate {self.fail_rate} is not in [0, 1]")
        if self.ttft_ms < 0 or self.tpot_ms < 0:
            raise ValueError("ttft_ms and tpot_ms must be >= 0")


@dataclass
class StandinStats:
    """What reached the stand-in (inference requests only; health and models are free)."""

    requests: int = 0
    failures: int = 0  # answered with fail_status on purpose
    rejected: int = 0  # answered 4xx: bad JSON, bad fields
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Reply:
    """One inference request, parsed: what to answer and how."""

    chat: bool
    usage: dict[str, Any]
    stream: bool
    include_usage: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def n_tokens(self) -> int:
        return int(self.usage["completion_tokens"])


class StandinApp:
    """The ASGI app (raw ASGI: no framework cost per request)."""

    def __init__(self, config: StandinConfig | None = None) -> None:
        self.config = config or StandinConfig()
        self.stats = StandinStats()
        self._rng = random.Random(self.config.seed)
        self._models = json_bytes(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.config.model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "suanli-standin",
                    }
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                await respond(send, 405, error_body("use POST", "invalid_request_error", 405))
                return
            await self._inference(receive, send, chat=path == "/v1/chat/completions")
        elif path == "/health" and method in ("GET", "HEAD"):
            await respond(send, 200, {"status": "ok"})
        elif path == "/v1/models" and method == "GET":
            await respond_raw(send, self._models)
        elif path == "/standin/stats" and method == "GET":
            await respond(send, 200, asdict(self.stats))
        else:
            await respond(send, 404, error_body(f"no route {path}", "invalid_request_error", 404))

    async def _inference(self, receive: Receive, send: Send, *, chat: bool) -> None:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            reply = self._parse(await read_body(receive), chat=chat)
            if self._rng.random() < self.config.fail_rate:
                stats.failures += 1
                status = self.config.fail_status
                await respond(send, status, error_body("stand-in fault", "server_error", status))
                return
            stats.prompt_tokens += reply.usage["prompt_tokens"]
            stats.completion_tokens += reply.n_tokens
            if reply.stream:
                await self._stream(send, reply)
            else:
                await self._whole(send, reply)
        except BadRequest as e:
            stats.rejected += 1
            await respond(send, 400, error_body(str(e), "invalid_request_error", 400))
        except (ConnectionError, OSError):
            pass  # the client went away mid-answer: nothing left to say
        finally:
            stats.in_flight -= 1

    def _parse(self, raw: bytes, *, chat: bool) -> _Reply:
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise BadRequest(f"the body is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        options = body.get("stream_options") or {}
        return _Reply(
            chat=chat,
            usage=expected_usage(body, chat=chat, cached_fraction=self.config.cached_fraction),
            stream=bool(body.get("stream", False)),
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        )

    async def _whole(self, send: Send, reply: _Reply) -> None:
        cfg = self.config
        delay_ms = cfg.ttft_ms + cfg.tpot_ms * max(reply.n_tokens - 1, 0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        text = "".join(token_text(i) for i in range(reply.n_tokens))
        if reply.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "length",
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        await respond(send, 200, {**self._head(reply), "choices": [choice], "usage": reply.usage})

    async def _stream(self, send: Send, reply: _Reply) -> None:
        cfg = self.config
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if cfg.ttft_ms > 0:
            await asyncio.sleep(cfg.ttft_ms / 1000)
        if reply.chat:
            await self._event(send, reply, {"role": "assistant", "content": ""}, None)
        for i in range(reply.n_tokens):
            if i and cfg.tpot_ms > 0:
                await asyncio.sleep(cfg.tpot_ms / 1000)
            await self._event(send, reply, token_text(i), None)
        await self._event(send, reply, {} if reply.chat else "", "length")
        tail = b""
        if reply.include_usage:
            last = {**self._head(reply, chunk=True), "choices": [], "usage": reply.usage}
            tail = b"data: " + json_bytes(last) + b"\n\n"
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})

    async def _event(
        self, send: Send, reply: _Reply, delta: dict[str, str] | str, finish: str | None
    ) -> None:
        if reply.chat:
            content = {"content": delta} if isinstance(delta, str) else delta
            choice: dict[str, Any] = {"index": 0, "delta": content, "logprobs": None}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None}
        choice["finish_reason"] = finish
        chunk = {**self._head(reply, chunk=True), "choices": [choice]}
        if reply.include_usage:
            chunk["usage"] = None
        data = b"data: " + json_bytes(chunk) + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})

    def _head(self, reply: _Reply, *, chunk: bool = False) -> dict[str, Any]:
        if reply.chat:
            kind, prefix = ("chat.completion.chunk" if chunk else "chat.completion"), "chatcmpl-"
        else:
            kind, prefix = "text_completion", "cmpl-"
        return {
            "id": prefix + reply.id,
            "object": kind,
            "created": reply.created,
            "model": self.config.model,
        }


def serve_standin(config: StandinConfig, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (SIGINT/SIGTERM): what ``python -m`` runs."""
    serve_forever(StandinApp(config), host=host, port=port)


@contextlib.contextmanager
def serve_standin_in_thread(
    config: StandinConfig | None = None, *, host: str = "127.0.0.1", timeout_s: float = 10.0
) -> Iterator[tuple[str, StandinApp]]:
    """Serve a stand-in on a free port in a background thread; yield ``(base_url, app)``
    (``base_url`` like ``http://127.0.0.1:PORT``, without ``/v1``) once it accepts
    connections, and stop it on exit. The port is bound before the server starts, so
    there is no race for it."""
    app = StandinApp(config)
    with serve_in_thread(app, host=host, timeout_s=timeout_s) as base_url:
        yield base_url, app


def standin_command(
    config: StandinConfig | None = None,
    *,
    port: int | str = "$PORT",
    host: str = "127.0.0.1",
    python: str | None = None,
) -> str:
    """The shell command line (``/bin/sh -c``) a replica runs to serve a stand-in on
    ``host:port`` (``$PORT`` stays unquoted for the shell to expand); its health path is
    ``/health``."""
    cfg = config or StandinConfig()
    argv = [python or sys.executable, "-m", "suanli.engines.standin", "--host", host]
    argv += ["--model", cfg.model, "--ttft-ms", str(cfg.ttft_ms), "--tpot-ms", str(cfg.tpot_ms)]
    argv += ["--cached-fraction", str(cfg.cached_fraction), "--fail-rate", str(cfg.fail_rate)]
    argv += ["--fail-status", str(cfg.fail_status)]
    if cfg.seed is not None:
        argv += ["--seed", str(cfg.seed)]
    text = str(port)
    return shlex.join(argv) + " --port " + (text if text.startswith("$") else shlex.quote(text))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m suanli.engines.standin``: serve a stand-in until interrupted."""
    parser = argparse.ArgumentParser(
        description="A protocol-level stand-in OpenAI upstream (not an inference engine)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--model", default="standin")
    parser.add_argument("--ttft-ms", type=float, default=5.0)
    parser.add_argument("--tpot-ms", type=float, default=1.0)
    parser.add_argument("--cached-fraction", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    config = StandinConfig(
        model=args.model,
        ttft_ms=args.ttft_ms,
        tpot_ms=args.tpot_ms,
        cached_fraction=args.cached_fraction,
        fail_rate=args.fail_rate,
        fail_status=args.fail_status,
        seed=args.seed,
    )
    serve_standin(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
