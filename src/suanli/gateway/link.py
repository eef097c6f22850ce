"""The gateway's one line to the exchange: the state long-poll and the usage reports.

:class:`ExchangeLink` is the seam: :class:`HttpExchangeLink` talks to a remote exchange
over HTTP with an operator token; the exchange that embeds a gateway passes an in-process
link with the same three methods. Failures raise :class:`LinkError` (the caller keeps
what it has and tries again later).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import httpx
from pydantic import ValidationError

from suanli.gateway.protocol import GatewayReport, GatewayState, ReportAck

__all__ = ["ExchangeLink", "HttpExchangeLink", "LinkError"]

_T = TypeVar("_T", GatewayState, ReportAck)


class LinkError(Exception):
    """The exchange could not be reached or did not answer as agreed (``status``: its
    HTTP status, when it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ExchangeLink(Protocol):
    async def state(self, etag: str | None, wait_s: float) -> GatewayState:
        """The gateway state: at once if it differs from ``etag``, else when it changes or
        ``wait_s`` has passed (then possibly the same state again)."""
        ...

    async def report(self, report: GatewayReport) -> ReportAck:
        """Record one usage batch (exactly once per ``batch_id``)."""
        ...

    async def aclose(self) -> None: ...


class HttpExchangeLink:
    """``GET /v1/gateway/state`` and ``POST /v1/gateway/reports`` of an exchange at
    ``base_url`` with an operator bearer ``token``.

    The long-poll's read timeout is ``wait_s`` plus a margin, so a healthy exchange that
    answers at the end of its wait is never cut off; a 304 (unchanged) returns the state
    this link last returned."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "suanli-gateway"},
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
        )
        self._last: GatewayState | None = None

    async def state(self, etag: str | None, wait_s: float) -> GatewayState:
        params: dict[str, str] = {"wait_s": f"{max(0.0, min(30.0, wait_s)):g}"}
        if etag is not None:
            params["etag"] = etag
        timeout = httpx.Timeout(self._timeout_s + wait_s, connect=min(5.0, self._timeout_s))
        request = self._http.build_request(
            "GET", "/v1/gateway/state", params=params, timeout=timeout
        )
        resp = await self._send(request)
        if resp.status_code == 304 and self._last is not None:
            return self._last
        self._last = _parse(GatewayState, resp)
        return self._last

    async def report(self, report: GatewayReport) -> ReportAck:
        request = self._http.build_request(
            "POST",
            "/v1/gateway/reports",
            content=report.model_dump_json().encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": report.batch_id},
        )
        resp = await self._send(request)
        return _parse(ReportAck, resp)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        what = f"{request.method} {request.url.path}"
        try:
            resp = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise LinkError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400 or (resp.status_code >= 300 and resp.status_code != 304):
            raise LinkError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
        return resp


def _parse(model: type[_T], resp: httpx.Response) -> _T:
    try:
        return model.model_validate_json(resp.content)
    except ValidationError as exc:
        raise LinkError(f"unexpected answer from the exchange: {exc}") from None
