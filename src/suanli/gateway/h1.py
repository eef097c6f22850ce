"""A lean HTTP/1.1 client for the gateway's hot path: keep-alive connections to replicas.

Why not httpx: measured in the gateway benchmark, httpx's layers and its connection pool
(which walks every connection on every request) cost more CPU per request than the whole
rest of the gateway, and the gateway's budget is about a millisecond. This client does
only what talking to a replica needs — one request at a time per connection, a body
known in advance, answers with a Content-Length, chunked or until close — on asyncio
protocols with the C parser (``httptools``, which uvicorn's standard extra installs).

Connections are kept per host, most recently used first; one the server closed while idle
is dropped when noticed, and a request whose *reused* connection turns out dead before
any answer byte is sent again on a fresh one (the server never saw it). The caller limits
concurrency (the gateway's admission), so there is no cap on connections here.

Errors: :class:`ConnectFailed` (nothing was sent), :class:`Dropped` (the connection died,
``answered`` says whether any of the answer had come), :class:`TimedOut`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectFailed", "Dropped", "H1Error", "H1Pool", "H1Response", "TimedOut"]

_HIGH_WATER = 1 << 20  # buffered answer bytes before reading from the socket pauses


class H1Error(Exception):
    """A replica could not be talked to."""


class ConnectFailed(H1Error):
    pass


class Dropped(H1Error):
    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class TimedOut(H1Error):
    pass


class _Conn(asyncio.Protocol):
    """One connection and the answer being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self._keep = False
        self.complete = False
        self.answered = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: H1Error | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Dropped(f"malformed answer: {exc}", answered=True))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.headers_done and not self.complete and self._until_close():
            self.complete = True  # an answer delimited by the end of the connection
            self._wake()
        elif not self.complete:
            why = f"connection closed ({exc!r})" if exc else "connection closed"
            self._fail(Dropped(why, answered=self.answered))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep = self._parser.should_keep_alive()  # only meaningful until the end
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # for the response
    def keep_alive(self) -> bool:
        return (
            self.complete
            and not self.lost
            and self._keep
            and self.headers.get("connection", "").lower() != "close"
        )

    async def wait(self, timeout_s: float) -> None:
        """Until something happens (headers, a chunk, the end, an error)."""
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._waiter
        except TimeoutError:
            raise TimedOut(f"no answer for {timeout_s:g} s") from None
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def take(self) -> bytes:
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return data

    @property
    def has_data(self) -> bool:
        return bool(self._chunks)

    def _until_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    def _fail(self, error: H1Error) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class H1Response:
    """An answer: ``status`` and ``headers`` now, the body by :meth:`read` or iteration."""

    def __init__(self, pool: H1Pool, key: tuple[str, int], conn: _Conn) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._closed = False

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    def __aiter__(self) -> H1Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while not conn.has_data:
            if conn.complete:
                await self.aclose()
                raise StopAsyncIteration
            await conn.wait(self._pool.read_timeout_s)
        return conn.take()

    async def aclose(self) -> None:
        """Give the connection back (a complete answer on a live connection) or close it."""
        if self._closed:
            return
        self._closed = True
        self._pool._put_back(self._key, self._conn)


class H1Pool:
    def __init__(
        self, connect_timeout_s: float, read_timeout_s: float, max_idle_per_host: int = 512
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._hosts: dict[str, tuple[str, int, str, str]] = {}

    async def request(
        self,
        base_url: str,
        path: str,
        body: bytes | None,
        *,
        method: str = "POST",
        timeout_s: float | None = None,
    ) -> H1Response:
        """Send one request to ``base_url + path``; the answer once its headers came."""
        host, port, host_header, prefix = self._split(base_url)
        head = f"{method} {prefix}{path} HTTP/1.1\r\nHost: {host_header}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        payload = (head + "Accept-Encoding: identity\r\n\r\n").encode("latin-1") + (body or b"")
        key = (host, port)
        timeout = timeout_s if timeout_s is not None else self.read_timeout_s
        while True:
            conn = await self._connection(key)
            try:
                return await self._exchange(key, conn, payload, timeout)
            except Dropped as exc:
                if conn.reused and not exc.answered:
                    continue  # the server had closed it while idle: it never saw this
                raise

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                if c.transport is not None:
                    c.transport.close()
        self._idle.clear()

    async def _exchange(
        self, key: tuple[str, int], conn: _Conn, payload: bytes, timeout_s: float
    ) -> H1Response:
        assert conn.transport is not None
        try:
            conn.transport.write(payload)
            while not conn.headers_done:
                await conn.wait(timeout_s)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        return H1Response(self, key, conn)

    async def _connection(self, key: tuple[str, int]) -> _Conn:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                conn._reset()
                conn.reused = True
                return conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, proto = await loop.create_connection(lambda: _Conn(loop), key[0], key[1])
        except TimeoutError:
            raise ConnectFailed(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {key[0]}:{key[1]}: {exc}") from None
        return proto

    def _put_back(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if conn.keep_alive() and len(idle) < self.max_idle:
            idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def _split(self, base_url: str) -> tuple[str, int, str, str]:
        """Host, port, Host header and path prefix of an endpoint (replicas speak plain
        HTTP: ``http://<host>:<port>[/prefix]``)."""
        hit = self._hosts.get(base_url)
        if hit is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise ConnectFailed(f"not an http:// endpoint: {base_url!r}")
            hit = (parts.hostname, parts.port or 80, parts.netloc, parts.path.rstrip("/"))
            if len(self._hosts) < 10_000:
                self._hosts[base_url] = hit
        return hit
