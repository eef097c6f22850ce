"""The HTTP edge, as plain ASGI (cheap on the hot path): body-size and rate limits,
request latency for /metrics.

Rate limits (see ``ratelimit``) are keyed here on the account of a token this process
already knows (a dict lookup, no query), else on the client address; a token seen for the
first time is charged to its account once ``deps`` has looked it up.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli.service.auth import TokenCache, bearer_token, hash_token
from suanli.service.metrics import Metrics
from suanli.service.ratelimit import RateLimits, TokenBuckets, account_key, address_key

__all__ = ["EdgeMiddleware", "TokenBuckets"]


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
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        limits: RateLimits,
        tokens: TokenCache,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.limits = limits
        self.tokens = tokens

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
        if await self._limited(scope, headers, send):
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

    async def _limited(self, scope: Scope, headers: dict[bytes, bytes], send: Send) -> bool:
        """Answer 429 and return True if this request is over a budget."""
        client = scope.get("client") or ("?", 0)
        key = address_key(str(client[0]))
        auth = headers.get(b"authorization")
        if auth:
            token = bearer_token(auth.decode("latin-1"))
            # Longer than any token we issue: never cached, so not worth hashing.
            digest = hash_token(token) if token and len(token) <= 200 else ""
            principal = self.tokens.get(digest)
            if principal is not None:
                key = account_key(principal.account_id)
            elif not self.tokens.was_valid(digest):
                wait_s = self.limits.auth_failures.wait_s(key)
                if wait_s > 0:
                    retry_s = max(1, round(wait_s + 0.5))
                    await _problem(
                        send,
                        429,
                        "rate-limited",
                        "Too many failed authentications",
                        "too many requests with unknown tokens from this address; "
                        f"retry in {retry_s} s",
                        {"retry-after": str(retry_s)},
                    )
                    return True
        wait_s = self.limits.requests.take(key)
        if wait_s > 0:
            await _problem(
                send,
                429,
                "rate-limited",
                "Too many requests",
                f"rate limit of {self.limits.requests.rate:g} requests/s exceeded; "
                f"retry in {wait_s:.2f} s",
                {"retry-after": str(max(1, round(wait_s + 0.5)))},
            )
            return True
        return False

    async def _too_large(self, send: Send) -> None:
        await _problem(
            send,
            413,
            "payload-too-large",
            "Request body too large",
            f"request bodies are limited to {self.max_body_bytes} bytes",
            {},
        )
