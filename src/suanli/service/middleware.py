"""The HTTP edge, as plain ASGI (cheap on the hot path): body-size and rate limits,
request latency for /metrics."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli.service.metrics import Metrics

__all__ = ["EdgeMiddleware", "TokenBuckets"]


class TokenBuckets:
    """A token bucket per client key: ``rate_per_s`` sustained, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if a request may pass now; else the seconds to wait."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0.0
            self._buckets[key] = (tokens, t)
            if len(self._buckets) > 50_000:
                self._buckets.clear()
            return (1.0 - tokens) / self.rate


async def _problem(
    send: Send, status: int, slug: str, title: str, detail: str, extra: dict[str, str]
) -> None:
    body = json.dumps(
        {"type": f"urn:suanli:problem:{slug}", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ] + [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, buckets: TokenBuckets
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_seconds.labels(scope["method"], path, str(status[0])).observe(
                time.perf_counter() - started
            )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        client = scope.get("client") or ("?", 0)
        key = hashlib.sha1(auth).hexdigest() if auth else f"ip:{client[0]}"
        wait_s = self.buckets.take(key)
        if wait_s > 0:
            await _problem(
                send,
                429,
                "rate-limited",
                "Too many requests",
                f"rate limit of {self.buckets.rate:g} requests/s exceeded; retry in {wait_s:.2f} s",
                {"retry-after": str(max(1, round(wait_s + 0.5)))},
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _problem(
                    send, 400, "bad-request", "Bad request", "invalid Content-Length", {}
                )
                return
            if int(declared) > self.max_body_bytes:
                await self._too_large(send)
                return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") and declared is None:
            await self.app(scope, receive, send)
            return
        # Read the whole body first (bounded), then replay it to the application.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: Any = await receive()
            return message  # type: ignore[no-any-return]

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _problem(
            send,
            413,
            "payload-too-large",
            "Request body too large",
            f"request bodies are limited to {self.max_body_bytes} bytes",
            {},
        )
