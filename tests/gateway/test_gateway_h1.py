"""The gateway's HTTP/1.1 client against raw servers: framing, keep-alive, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from suanli.gateway.h1 import ConnectFailed, Dropped, H1Pool, TimedOut

from .conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def serve(handler: Handler, scenario: Callable[[H1Pool, str], Awaitable[object]]) -> object:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        await handler(r, w)

    async def main() -> object:
        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = H1Pool(connect_timeout_s=1.0, read_timeout_s=0.5)
        try:
            return await scenario(pool, f"http://127.0.0.1:{port}")
        finally:
            await pool.aclose()
            server.close()
            for w in writers:
                w.close()
            await server.wait_closed()
            await asyncio.sleep(0.01)  # the transports' close callbacks

    return asyncio.run(main())


def test_content_length_answers_reuse_the_connection() -> None:
    connections: list[int] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                req = await _read_request(r)
            except asyncio.IncompleteReadError:
                break
            assert req.startswith(b"POST /base/v1/x HTTP/1.1\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()
        w.close()

    async def scenario(pool: H1Pool, url: str) -> list[bytes]:
        out = []
        for _ in range(3):
            resp = await pool.request(url + "/base", "/v1/x", b"{}")
            out.append(await resp.read())
        return out

    assert serve(handler, scenario) == [b"ok"] * 3
    assert len(connections) == 1


def test_chunked_answers_arrive_chunk_by_chunk() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await w.drain()
            await asyncio.sleep(0.02)
        w.write(b"0\r\n\r\n")
        await w.drain()

    async def scenario(pool: H1Pool, url: str) -> list[bytes]:
        resp = await pool.request(url, "/v1/x", b"{}")
        assert resp.status == 200
        return [chunk async for chunk in resp]

    assert serve(handler, scenario) == [b"data: 1\n\n", b"data: 2\n\n"]


def test_an_answer_ended_by_closing_the_connection() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
        await w.drain()
        w.close()

    async def scenario(pool: H1Pool, url: str) -> list[bytes]:
        return [await (await pool.request(url, "/v1/x", b"{}")).read() for _ in range(2)]

    assert serve(handler, scenario) == [b"abc", b"abc"]


def test_a_connection_closed_while_idle_is_replaced_without_failing() -> None:
    seen: list[int] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        seen.append(1)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive promised …
        await w.drain()
        w.close()  # … and broken

    async def scenario(pool: H1Pool, url: str) -> list[bytes]:
        first = await (await pool.request(url, "/v1/x", b"{}")).read()
        second = await (await pool.request(url, "/v1/x", b"{}")).read()
        return [first, second]

    assert serve(handler, scenario) == [b"ok", b"ok"]
    assert len(seen) == 2


def test_failures_connect_drop_and_timeout() -> None:
    async def drop(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        w.close()

    async def dropped(pool: H1Pool, url: str) -> None:
        with pytest.raises(Dropped) as err:
            await pool.request(url, "/v1/x", b"{}")
        assert not err.value.answered

    serve(drop, dropped)

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(r)
        await asyncio.sleep(5)

    async def timed_out(pool: H1Pool, url: str) -> None:
        with pytest.raises(TimedOut):
            await pool.request(url, "/v1/x", b"{}")

    serve(silent, timed_out)

    async def refused() -> None:
        pool = H1Pool(connect_timeout_s=1.0, read_timeout_s=1.0)
        with pytest.raises(ConnectFailed):
            await pool.request(f"http://127.0.0.1:{free_port()}", "/v1/x", b"{}")
        with pytest.raises(ConnectFailed, match="http://"):
            await pool.request("https://example.invalid", "/v1/x", b"{}")

    asyncio.run(refused())
