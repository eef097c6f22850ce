"""What the gateway tests share: states built in a line, a fake exchange link, a tiny
OpenAI-speaking upstream, and servers (uvicorn in a thread on a free port).

The upstream's usage follows one rule so tests can predict it: prompt tokens = the words
of the messages (or prompt) + 3, cached tokens = 2 when the prompt has more than 2,
completion tokens = ``max_tokens`` (default 5), one chunk per token when streaming. With
``usage_chunk`` off it streams like llama-cpp-python's server: no usage chunk, whatever
``stream_options`` asks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from suanli.gateway import GatewayConfig, create_gateway_app, gateway_of
from suanli.gateway.keys import digest
from suanli.gateway.link import LinkError
from suanli.gateway.protocol import (
    CityRoute,
    GatewayReport,
    GatewayState,
    KeyEntry,
    ReplicaEntry,
    ReportAck,
    ServiceEntry,
)

KEY = "sk-test-key-1"
SERVICE = "chat-svc"


# ----- states -----------------------------------------------------------------------------


def replica(rid: str, endpoint: str, pool: str = "p1", **kw: Any) -> ReplicaEntry:
    return ReplicaEntry(
        allocation_id=rid, pool_id=pool, endpoint=endpoint, max_concurrency=kw.pop("mc", 8), **kw
    )


def route(pool: str, weight: float, rtt_ms: float = 5.0, in_plan: bool | None = None) -> CityRoute:
    return CityRoute(
        pool_id=pool,
        weight=weight,
        rtt_ms=rtt_ms,
        in_plan=weight > 0 if in_plan is None else in_plan,
    )


def service(
    replicas: list[ReplicaEntry], routes: dict[str, list[CityRoute]] | None = None, **kw: Any
) -> ServiceEntry:
    pools = sorted({r.pool_id for r in replicas})
    return ServiceEntry(
        id=kw.pop("id", "svc1"),
        name=kw.pop("name", SERVICE),
        tenant_id="t1",
        model="Qwen2.5-7B",
        ttft_ms=kw.pop("ttft_ms", 2000.0),
        tpot_ms=kw.pop("tpot_ms", 200.0),
        replicas=replicas,
        routes=routes if routes is not None else {"*": [route(p, 1.0) for p in pools]},
        **kw,
    )


def key_entry(key: str = KEY, kid: str = "k1", service_id: str = "svc1", **kw: Any) -> KeyEntry:
    return KeyEntry(id=kid, digest=digest(key), service_id=service_id, **kw)


def state(services: list[ServiceEntry], keys: list[KeyEntry], etag: str = "e1") -> GatewayState:
    return GatewayState(
        etag=etag, generated_at=datetime.now(UTC), round_id=1, services=services, keys=keys
    )


# ----- a fake exchange link ---------------------------------------------------------------


class FakeLink:
    """The exchange side in memory: ``publish`` a state (any thread); reports are recorded
    once per batch id, as the exchange does."""

    def __init__(self, initial: GatewayState) -> None:
        self._lock = threading.Lock()
        self.current = initial
        self.reports: dict[str, GatewayReport] = {}
        self.sent: list[str] = []  # batch ids in the order they came, resends included
        self.fail_reports = False
        self.closed = False

    def publish(self, new: GatewayState) -> None:
        with self._lock:
            self.current = new

    async def state(self, etag: str | None, wait_s: float) -> GatewayState:
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                current = self.current
            if current.etag != etag or time.monotonic() >= deadline:
                return current
            await asyncio.sleep(0.005)

    async def report(self, report: GatewayReport) -> ReportAck:
        if self.fail_reports:
            raise LinkError("the exchange is down (fake)")
        with self._lock:
            self.sent.append(report.batch_id)
            duplicate = report.batch_id in self.reports
            self.reports.setdefault(report.batch_id, report)
        return ReportAck(batch_id=report.batch_id, duplicate=duplicate)

    async def aclose(self) -> None:
        self.closed = True

    def usage_totals(self) -> dict[str, int]:
        """Summed usage over every recorded batch."""
        out = {"requests": 0, "errors": 0, "input": 0, "cached": 0, "output": 0}
        with self._lock:
            reports = list(self.reports.values())
        for r in reports:
            for u in r.usage:
                out["requests"] += u.requests
                out["errors"] += u.errors
                out["input"] += u.input_tokens
                out["cached"] += u.cached_input_tokens
                out["output"] += u.output_tokens
        return out

    def demand_totals(self) -> dict[str, int]:
        out = {"requests": 0, "rejected": 0, "slo_met": 0, "slo_total": 0}
        with self._lock:
            reports = list(self.reports.values())
        for r in reports:
            for d in r.demand:
                out["requests"] += d.requests
                out["rejected"] += d.rejected
                out["slo_met"] += d.slo_met
                out["slo_total"] += d.slo_total
        return out


# ----- a tiny OpenAI upstream -------------------------------------------------------------


@dataclass
class Behaviour:
    """How the test upstream answers; change it between requests."""

    status: int = 200  # answered to every inference request
    die_after: int | None = None  # streaming: drop the connection after this many tokens
    token_gap_s: float = 0.0
    usage_chunk: bool = True  # False: ignore stream_options.include_usage (as llama.cpp)
    hold: threading.Event | None = None  # answer only once this is set
    bodies: list[dict[str, Any]] = field(default_factory=list)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


def expected_usage(words: int, max_tokens: int = 5) -> dict[str, int]:
    prompt = words + 3
    return {"prompt": prompt, "cached": 2 if prompt > 2 else 0, "output": max_tokens}


def _usage(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    if chat:
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    else:
        words = len(str(body.get("prompt", "")).split())
    u = expected_usage(words, int(body.get("max_tokens") or 5))
    return {
        "prompt_tokens": u["prompt"],
        "completion_tokens": u["output"],
        "total_tokens": u["prompt"] + u["output"],
        "prompt_tokens_details": {"cached_tokens": u["cached"]},
    }


def upstream_app(b: Behaviour) -> Starlette:
    async def infer(request: Request) -> Response:
        chat = request.url.path.endswith("/chat/completions")
        body = await request.json()
        b.bodies.append(body)
        b.entered.release()
        if b.hold is not None:
            await asyncio.to_thread(b.hold.wait, 10)
        if b.status != 200:
            err = {
                "error": {"message": "busy", "type": "server_error", "code": None, "param": None}
            }
            return JSONResponse(err, status_code=b.status)
        usage = _usage(body, chat)
        n = usage["completion_tokens"]
        words = [f"tok{i}" for i in range(n)]
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            choice: dict[str, Any] = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "length",
                }
                if chat
                else {"index": 0, "text": " ".join(words), "finish_reason": "length"}
            )
            return JSONResponse(
                {
                    "id": "x1",
                    "object": obj,
                    "created": 1,
                    "model": body["model"],
                    "choices": [choice],
                    "usage": usage,
                }
            )
        asked = (body.get("stream_options") or {}).get("include_usage") is True
        include = asked and b.usage_chunk
        return StreamingResponse(
            _stream(b, body["model"], chat, words, usage, include), media_type="text/event-stream"
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", infer, methods=["POST"]),
            Route("/v1/completions", infer, methods=["POST"]),
            Route("/health", health),
        ]
    )


async def _stream(
    b: Behaviour, model: str, chat: bool, words: list[str], usage: dict[str, Any], include: bool
) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    extra = {"usage": None} if include else {}

    def chunk(choice: dict[str, Any]) -> bytes:
        doc = {
            "id": "x1",
            "object": obj,
            "created": 1,
            "model": model,
            "choices": [choice],
            **extra,
        }
        return b"data: " + json.dumps(doc).encode() + b"\n\n"

    if chat:
        yield chunk(
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        )
    for i, w in enumerate(words):
        if b.die_after is not None and i >= b.die_after:
            raise RuntimeError("the test upstream dies mid-stream")
        if b.token_gap_s:
            await asyncio.sleep(b.token_gap_s)
        piece = w if i == 0 else " " + w
        yield chunk(
            {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            if chat
            else {"index": 0, "text": piece, "finish_reason": None}
        )
    yield chunk(
        {"index": 0, "delta": {}, "finish_reason": "length"}
        if chat
        else {"index": 0, "text": "", "finish_reason": "length"}
    )
    if include:
        doc = {
            "id": "x1",
            "object": obj,
            "created": 1,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield b"data: " + json.dumps(doc).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


# ----- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread (its lifespan included)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="none",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@dataclass
class Upstream:
    behaviour: Behaviour
    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def make_upstream() -> Iterator[Callable[[], Upstream]]:
    started: list[ServerThread] = []

    def make() -> Upstream:
        b = Behaviour()
        server = ServerThread(upstream_app(b)).start()
        started.append(server)
        return Upstream(b, server)

    yield make
    for s in started:
        s.stop()


@dataclass
class GatewayUnderTest:
    link: FakeLink
    server: ServerThread
    app: Any

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def gateway(self) -> Any:
        return gateway_of(self.app)

    def publish(self, new: GatewayState, timeout_s: float = 5.0) -> None:
        """Publish ``new`` and wait until the gateway serves from it."""
        self.link.publish(new)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            view = self.gateway.view
            if view is not None and view.state.etag == new.etag:
                return
            time.sleep(0.005)
        raise AssertionError(f"the gateway did not take state {new.etag}")


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayUnderTest]]:
    started: list[GatewayUnderTest] = []

    def make(initial: GatewayState, **cfg: Any) -> GatewayUnderTest:
        link = FakeLink(initial)
        config = GatewayConfig(
            name=cfg.pop("name", "edge-test"),
            data_dir=cfg.pop("data_dir", tmp_path / f"gw{len(started)}"),
            city=cfg.pop("city", "Shanghai"),
            report_interval_s=cfg.pop("report_interval_s", 0.05),
            state_wait_s=cfg.pop("state_wait_s", 0.5),
            **cfg,
        )
        app = create_gateway_app(link, config)
        gut = GatewayUnderTest(link, ServerThread(app).start(), app)
        started.append(gut)
        gut.publish(initial)
        return gut

    yield make
    for g in started:
        g.server.stop()


def metered_demand(gw: GatewayUnderTest, until: Any, requests: int) -> dict[str, int]:
    """The demand totals once ``requests`` requests were reported."""
    until(lambda: gw.link.demand_totals()["requests"] == requests, 10, "demand reports")
    return gw.link.demand_totals()


@pytest.fixture
def until() -> Callable[[Callable[[], bool], float, str], None]:
    def wait(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.01)
        raise AssertionError(f"gave up waiting for {what}")

    return wait
