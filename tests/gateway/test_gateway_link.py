"""HttpExchangeLink against a stub exchange over real HTTP: the long-poll, 304, reports
with their Idempotency-Key, errors; and a whole gateway fed by it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from suanli.gateway import GatewayConfig, HttpExchangeLink, LinkError, create_gateway_app
from suanli.gateway.protocol import GatewayReport, GatewayState, ReportAck

from .conftest import (
    KEY,
    SERVICE,
    ServerThread,
    Upstream,
    free_port,
    key_entry,
    replica,
    service,
    state,
)

TOKEN = "sl_operator_token_for_tests_0123456789"


@dataclass
class StubExchange:
    current: GatewayState
    answer_304: bool = False
    reports: dict[str, GatewayReport] = field(default_factory=dict)
    keys_seen: list[str] = field(default_factory=list)
    polls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def get_state(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"detail": "no"}, status_code=401)
            self.polls += 1
            etag = request.query_params.get("etag")
            deadline = time.monotonic() + float(request.query_params.get("wait_s", "0"))
            while self.current.etag == etag and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if self.current.etag == etag and self.answer_304:
                return Response(status_code=304)
            return Response(self.current.model_dump_json(), media_type="application/json")

        async def post_report(request: Request) -> Response:
            report = GatewayReport.model_validate_json(await request.body())
            with self.lock:
                self.keys_seen.append(request.headers.get("idempotency-key", ""))
                duplicate = report.batch_id in self.reports
                self.reports.setdefault(report.batch_id, report)
            ack = ReportAck(batch_id=report.batch_id, duplicate=duplicate)
            return Response(ack.model_dump_json(), media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/gateway/state", get_state),
                Route("/v1/gateway/reports", post_report, methods=["POST"]),
            ]
        )


@pytest.fixture
def stub() -> Iterator[tuple[StubExchange, ServerThread]]:
    ex = StubExchange(state([], [key_entry()]))
    server = ServerThread(ex.app()).start()
    yield ex, server
    server.stop()


def run(coro_fn: Callable[[HttpExchangeLink], object], url: str, token: str = TOKEN) -> object:
    async def go() -> object:
        link = HttpExchangeLink(url, token)
        try:
            return await coro_fn(link)  # type: ignore[misc]
        finally:
            await link.aclose()

    return asyncio.run(go())


def test_long_poll_answers_at_once_then_waits_then_wakes_on_a_change(
    stub: tuple[StubExchange, ServerThread],
) -> None:
    ex, server = stub

    async def scenario(link: HttpExchangeLink) -> list[str]:
        first = await link.state(None, 20)  # no etag: at once
        t0 = time.monotonic()
        same = await link.state(first.etag, 0.3)  # unchanged: after the wait
        waited = time.monotonic() - t0
        assert same.etag == first.etag and waited >= 0.25
        poll = asyncio.ensure_future(link.state(first.etag, 20))
        while ex.polls < 3:
            await asyncio.sleep(0.005)
        ex.current = ex.current.model_copy(update={"etag": "e2", "keys": []})  # a revocation
        changed = await asyncio.wait_for(poll, 5)
        return [first.etag, changed.etag]

    assert run(scenario, server.url) == ["e1", "e2"]


def test_a_304_returns_the_last_state(stub: tuple[StubExchange, ServerThread]) -> None:
    ex, server = stub
    ex.answer_304 = True

    async def scenario(link: HttpExchangeLink) -> tuple[str, str]:
        first = await link.state(None, 0)
        again = await link.state(first.etag, 0)
        return first.etag, again.etag

    assert run(scenario, server.url) == ("e1", "e1")


def test_reports_carry_their_idempotency_key(stub: tuple[StubExchange, ServerThread]) -> None:
    ex, server = stub
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    report = GatewayReport(batch_id="b" * 32, gateway="edge", window_start=now, window_end=now)

    async def scenario(link: HttpExchangeLink) -> list[bool]:
        return [(await link.report(report)).duplicate, (await link.report(report)).duplicate]

    assert run(scenario, server.url) == [False, True]
    assert ex.keys_seen == ["b" * 32, "b" * 32]


def test_refusals_and_unreachable_exchanges_are_link_errors(
    stub: tuple[StubExchange, ServerThread],
) -> None:
    _, server = stub
    with pytest.raises(LinkError, match="401"):
        run(lambda link: link.state(None, 0), server.url, token="wrong")
    with pytest.raises(LinkError, match="ConnectError"):
        run(lambda link: link.state(None, 0), f"http://127.0.0.1:{free_port()}")


def test_a_gateway_fed_over_http(
    stub: tuple[StubExchange, ServerThread], make_upstream: Callable[[], Upstream], tmp_path: Path
) -> None:
    ex, server = stub
    up = make_upstream()
    ex.current = state([service([replica("r1", up.url)])], [key_entry()], etag="e5")
    link = HttpExchangeLink(server.url, TOKEN)
    config = GatewayConfig(
        name="edge-http",
        data_dir=tmp_path / "gw",
        city="Beijing",
        report_interval_s=0.05,
        state_wait_s=1.0,
    )
    gateway = ServerThread(create_gateway_app(link, config)).start()
    try:
        import httpx

        deadline = time.monotonic() + 10
        while httpx.get(gateway.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never got a state"
            time.sleep(0.01)
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0) as c:
            c.chat.completions.create(model=SERVICE, messages=[{"role": "user", "content": "hi"}])
        while not ex.reports:
            assert time.monotonic() < deadline, "no report reached the exchange"
            time.sleep(0.01)
    finally:
        gateway.stop()
    (report,) = ex.reports.values()
    assert report.gateway == "edge-http" and report.usage[0].city == "Beijing"
    assert report.usage[0].output_tokens == 5
