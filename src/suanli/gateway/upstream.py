"""One request to one replica: send it, sort failures into retry or not, relay the answer.

Retry rule: a refused or reset connection, a 502/503/504, or a reset before the first
byte of the answer went to the client may be tried on the next replica — nothing
reached the user yet. Once streaming to the client has begun, never: a retry would
repeat tokens the user already has. A timeout waiting for the replica is not retried
either (the replica may still be working on it; a second copy doubles the load).

Streams are relayed as they arrive (no buffering past the end of the current SSE event),
the output chunks timestamped for TTFT/TPOT and the ``usage`` read from the final chunk;
the gateway asks every replica for that chunk (``stream_options.include_usage``) and
drops it from what the client sees unless the client asked for it too.

Not every engine sends that chunk (llama-cpp-python's server ignores
``stream_options.include_usage``). A stream that finished without one is metered from
what the gateway saw (:func:`estimate_usage`): output tokens = the content chunks relayed
(exact for engines that send one token per chunk, as llama.cpp and vLLM do), prompt
tokens = ceil(characters of the prompt or of all message contents / 4) plus any prompt
given as token ids — an estimate —, cached tokens 0; the gateway counts such streams in
``suanli_gateway_usage_estimated_total``. Where the engine reports usage, its figures are
used. A stream cut short (the replica failed, the client left) bills the output chunks
seen and no prompt tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from suanli.gateway.errors import error_body
from suanli.gateway.h1 import ConnectFailed, Dropped, H1Error, H1Pool, H1Response, TimedOut

__all__ = [
    "RETRY_STATUSES",
    "RelayResponse",
    "SseRelay",
    "StreamEnd",
    "UpstreamFailure",
    "Usage",
    "estimate_usage",
    "open_upstream",
    "prefetch",
    "usage_from",
]

RETRY_STATUSES = frozenset({502, 503, 504})
_TIMED_OUT = "the replica did not answer in time"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class UpstreamFailure(Exception):
    """The replica failed before anything reached the client."""

    def __init__(self, message: str, *, retry: bool, status: int = 502) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    cached: int = 0
    output: int = 0


def usage_from(doc: Any) -> Usage | None:
    """The ``usage`` of an OpenAI answer (or final stream chunk), if it has one."""
    u = doc.get("usage") if isinstance(doc, dict) else None
    if not isinstance(u, dict):
        return None
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(_int(u.get("prompt_tokens")), _int(cached), _int(u.get("completion_tokens")))


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def estimate_usage(doc: Mapping[str, Any], output_chunks: int) -> Usage:
    """The usage of a finished stream the engine reported none for: the output chunks
    seen, and the prompt's tokens estimated at 4 characters each (token ids counted)."""
    messages = doc.get("messages")
    if isinstance(messages, list):
        parts = [m.get("content") for m in messages if isinstance(m, dict)]
        chars, ids = _text_size(parts)
    else:
        chars, ids = _text_size(doc.get("prompt"))
    return Usage(prompt=math.ceil(chars / 4) + ids, output=output_chunks)


def _text_size(v: Any, depth: int = 0) -> tuple[int, int]:
    """(characters of text, token ids) in a prompt, message content, or a list of them
    (content parts: their ``text``); no deeper than any of those nest."""
    if isinstance(v, str):
        return len(v), 0
    if isinstance(v, int) and not isinstance(v, bool):
        return 0, 1
    if isinstance(v, dict):
        return _text_size(v.get("text"), depth + 1)
    chars = ids = 0
    if isinstance(v, list) and depth < 3:
        for item in v:
            c, i = _text_size(item, depth + 1)
            chars += c
            ids += i
    return chars, ids


async def open_upstream(
    pool: H1Pool, endpoint: str, path: str, body: bytes, *, stream: bool
) -> tuple[H1Response, bytes]:
    """POST ``body`` to ``endpoint + path``; the answer and its body (all of it unless
    ``stream``: then nothing yet), or :class:`UpstreamFailure` saying whether another
    replica may be tried."""
    try:
        resp = await pool.request(endpoint, path, body)
        if resp.status in RETRY_STATUSES:
            await resp.aclose()
            raise UpstreamFailure(
                f"the replica answered {resp.status}", retry=True, status=resp.status
            )
        content = b"" if stream and resp.status == 200 else await resp.read()
    except ConnectFailed as exc:
        raise UpstreamFailure(str(exc), retry=True) from exc
    except TimedOut as exc:
        raise UpstreamFailure(_TIMED_OUT, retry=False, status=504) from exc
    except Dropped as exc:
        raise UpstreamFailure(f"the replica dropped the connection: {exc}", retry=True) from exc
    return resp, content


async def prefetch(resp: H1Response) -> bytes:
    """The first bytes of a streamed answer: a replica that fails before sending any is
    still a failure that another replica may retry."""
    try:
        return await resp.__anext__()
    except StopAsyncIteration:
        raise UpstreamFailure("the replica sent an empty answer", retry=True) from None
    except TimedOut as exc:
        await resp.aclose()
        raise UpstreamFailure(_TIMED_OUT, retry=False, status=504) from exc
    except H1Error as exc:
        await resp.aclose()
        raise UpstreamFailure(f"the replica dropped the stream: {exc}", retry=True) from exc


class SseRelay:
    """Splits a replica's bytes into SSE events: times the output chunks, keeps the
    usage, and drops the usage-only chunk when the client did not ask for it."""

    def __init__(self, drop_usage: bool, clock: Callable[[], float] = time.perf_counter) -> None:
        self.drop_usage = drop_usage
        self._clock = clock
        self._buf = b""
        self.usage: Usage | None = None
        self.first: float | None = None  # when the first output chunk was relayed
        self.last: float | None = None
        self.chunks = 0  # output chunks
        self.error = False  # the replica sent an error event

    def feed(self, data: bytes) -> bytes:
        """Bytes to send the client now (complete events only)."""
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            event = buf[start : end + 2]
            start = end + 2
            if self._keep(event):
                out.append(event)
        self._buf = buf[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest

    @property
    def tpot(self) -> float | None:
        if self.chunks < 2 or self.first is None or self.last is None:
            return None
        return (self.last - self.first) / (self.chunks - 1)

    def _keep(self, event: bytes) -> bool:
        data = b"".join(
            line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not data or data == b"[DONE]":
            return True
        try:
            doc = json.loads(data)
        except ValueError:
            return True
        if not isinstance(doc, dict):
            return True
        if doc.get("error"):
            self.error = True
            return True
        usage = usage_from(doc)
        if usage is not None:
            self.usage = usage
        choices = doc.get("choices")
        if choices:
            if _has_output(choices):
                now = self._clock()
                if self.first is None:
                    self.first = now
                self.last = now
                self.chunks += 1
            return True
        return not (usage is not None and self.drop_usage)


def _has_output(choices: Any) -> bool:
    if not isinstance(choices, list):
        return False
    for c in choices:
        if not isinstance(c, dict):
            continue
        if c.get("text"):
            return True
        delta = c.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls")
        ):
            return True
    return False


@dataclass(slots=True)
class StreamEnd:
    """How a relayed stream ended: ``complete`` (the replica finished it), or the
    replica failed mid-way (``replica_failed``), or the client left."""

    relay: SseRelay
    complete: bool = False
    replica_failed: bool = False
    client_left: bool = False


class RelayResponse(Response):
    """A streamed answer relayed from a replica; ``on_end`` runs once, however it ends."""

    def __init__(
        self,
        upstream: H1Response,
        first: bytes,
        relay: SseRelay,
        on_end: Callable[[StreamEnd], None],
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.status_code = upstream.status
        self.background = None
        self._start_headers = [*_SSE_HEADERS, *headers]
        self._upstream = upstream
        self._first = first
        self._end = StreamEnd(relay)
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        end, relay = self._end, self._end.relay
        watch = asyncio.ensure_future(_disconnect(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self._start_headers,
                }
            )
            await send(_body(relay.feed(self._first), more=True))
            try:
                async for data in self._upstream:
                    if watch.done():
                        end.client_left = True
                        break
                    out = relay.feed(data)
                    if out:
                        await send(_body(out, more=True))
                else:
                    end.complete = True
            except H1Error as exc:
                end.replica_failed = True
                msg = f"the replica failed during the answer ({type(exc).__name__}); not retried"
                tail = b"data: " + error_body(msg, "upstream_error", "upstream_failed") + b"\n\n"
                relay.flush()  # a torn event would swallow the error event
                await send(_body(tail, more=False))
                return
            await send(_body(relay.flush(), more=False))
        finally:
            watch.cancel()
            with contextlib.suppress(Exception):
                await self._upstream.aclose()
            self._on_end(end)


def _body(data: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
