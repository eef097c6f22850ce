"""The OpenAI wire rules and raw-ASGI reply helpers of the stand-in
(:mod:`suanli.engines.standin`).

What it holds: the ASGI type aliases; the token-counting rules (:func:`prompt_tokens`,
:func:`max_tokens`, :func:`expected_usage`, :data:`MESSAGE_OVERHEAD`,
:data:`DEFAULT_MAX_TOKENS`) and :class:`BadRequest` for a body the OpenAI API would answer
400; the made-up words (:func:`token_text`); and the plumbing of raw ASGI: reading a body,
answering JSON (:func:`respond`, :func:`respond_raw`, :func:`error_body`), and the lifespan
handshake.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MESSAGE_OVERHEAD",
    "BadRequest",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "expected_usage",
    "json_bytes",
    "lifespan",
    "max_tokens",
    "prompt_tokens",
    "read_body",
    "respond",
    "respond_raw",
    "token_text",
]

MESSAGE_OVERHEAD = 4  # prompt tokens per chat message on top of its words (role, separators)
DEFAULT_MAX_TOKENS = 16
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BadRequest(Exception):
    """A request the OpenAI API would answer 400."""


def _text_of(content: Any) -> str:
    """A message's text: a string, or the ``text`` of its content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise BadRequest("message content must be a string or a list of parts")


def prompt_tokens(body: dict[str, Any], *, chat: bool) -> int:
    """The prompt tokens the stand-in reports for a request body (the module's rule)."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        return sum(
            len(_text_of(m.get("content")).split()) + MESSAGE_OVERHEAD
            for m in messages
            if isinstance(m, dict)
        )
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)
        return sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompt)
    raise BadRequest("'prompt' must be a string, a list of strings or of token ids")


def max_tokens(body: dict[str, Any], *, chat: bool) -> int:
    """The completion tokens asked for (``max_completion_tokens`` first, for chat)."""
    value = body.get("max_completion_tokens") if chat else None
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return DEFAULT_MAX_TOKENS
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest("'max_tokens' must be a non-negative integer")
    return value


def expected_usage(
    body: dict[str, Any], *, chat: bool, cached_fraction: float = 0.0
) -> dict[str, Any]:
    """The ``usage`` the stand-in answers ``body`` with: what tests compare against."""
    prompt = prompt_tokens(body, chat=chat)
    completion = max_tokens(body, chat=chat)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": math.floor(prompt * cached_fraction)},
    }


def token_text(i: int) -> str:
    """The ``i``-th made-up output token."""
    return " " + _WORDS[i % len(_WORDS)]


def json_bytes(obj: Any) -> bytes:
    """Compact JSON."""
    return json.dumps(obj, separators=(",", ":")).encode()


async def respond(send: Send, status: int, body: Any) -> None:
    """Answer ``body`` as JSON with ``status``."""
    data = json_bytes(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def respond_raw(send: Send, data: bytes) -> None:
    """Answer 200 with JSON already encoded."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def read_body(receive: Receive) -> bytes:
    """The whole request body; :class:`ConnectionError` if the client goes away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up or tear down; answering keeps uvicorn from logging that the
    app does not speak the lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
