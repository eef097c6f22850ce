"""The open-loop load generator of ``suanli bench gateway``, run in its own process.

Requests leave on a fixed schedule whatever the answers do, so a slow target cannot slow
the offered load; raw asyncio HTTP/1.1 with keep-alive (uvloop when installed), cheap
enough to leave the CPU to the things measured. It prints one JSON object: requests sent
and answered 200, the statuses, the achieved rate, and p50/p90/p99 of the time to the first
body byte (for a stream, the first token) and to the end, from each request's scheduled
send time. :func:`run_load` runs it as a subprocess and returns that object.

    python -m suanli.bench._loadgen --url U --rate R --seconds S [--tokens N] [--stream] [--key K]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from suanli.bench._loopback import clean_env
from suanli.bench._stub_exchange import SERVICE

__all__ = ["main", "run_load"]


def _request_bytes(url: str, key: str | None, stream: bool, tokens: int) -> bytes:
    parts = urlsplit(url)
    body = json.dumps(
        {
            "model": SERVICE,
            "messages": [{"role": "user", "content": "measure the gateway please"}],
            "max_tokens": tokens,
            "stream": stream,
        }
    ).encode()
    head = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, float, bool]:
    """Status, when the first body byte came (perf_counter), keep-alive."""
    status = int((await reader.readline()).split()[1])
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    first = 0.0
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
        first = time.perf_counter()
    else:  # chunked
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
            first = first or time.perf_counter()
        await reader.readline()
    return status, first or time.perf_counter(), headers.get(b"connection") != b"close"


async def _open_loop(url: str, payload: bytes, rate: float, seconds: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    firsts: list[float] = []
    totals: list[float] = []
    statuses: dict[str, int] = {}

    async def one(at: float) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        try:
            conn[1].write(payload)
            status, first, keep = await asyncio.wait_for(_read_answer(conn[0]), 60)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            statuses["failed"] = statuses.get("failed", 0) + 1
            conn[1].close()
            return
        end = time.perf_counter()
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            firsts.append(first - at)
            totals.append(end - at)
        if keep:
            idle.append(conn)
        else:
            conn[1].close()

    n = max(1, int(rate * seconds))
    tasks = []
    start = time.perf_counter()
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for _, w in idle:
        w.close()
    return {
        "sent": n,
        "ok": len(totals),
        "statuses": statuses,
        "achieved_rps": round(len(totals) / wall, 1) if wall > 0 else 0.0,
        "first_ms": _summary(firsts),
        "total_ms": _summary(totals),
    }


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    s = sorted(values)

    def pick(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))] * 1000.0, 3)

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def run_load(
    url: str, rate: float, seconds: float, stream: bool, tokens: int, key: str | None
) -> dict[str, Any]:
    """Run the load generator in its own process against ``url``; its JSON result."""
    argv = [
        sys.executable,
        "-m",
        "suanli.bench._loadgen",
        "--url",
        url,
        "--rate",
        f"{rate:g}",
        "--seconds",
        f"{seconds:g}",
        "--tokens",
        str(tokens),
    ]
    if stream:
        argv.append("--stream")
    if key:
        argv += ["--key", key]
    out = subprocess.run(
        argv, capture_output=True, env=clean_env(), timeout=seconds + 120, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m suanli.bench._loadgen``: open-loop load against one URL; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m suanli.bench._loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    payload = _request_bytes(args.url, args.key, args.stream, args.tokens)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    result = runner(_open_loop(args.url, payload, args.rate, args.seconds))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
