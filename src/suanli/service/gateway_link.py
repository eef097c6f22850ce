"""The exchange's own gateway talks to the exchange in process: no HTTP hop, no token.

:class:`LocalExchangeLink` is the gateway's link to the exchange (the same three calls
the HTTP client makes) over the very functions behind ``GET /v1/gateway/state`` and
``POST /v1/gateway/reports``; database work runs in worker threads, so the gateway's
event loop never blocks on it.
"""

from __future__ import annotations

import anyio

from suanli.gateway.protocol import GatewayReport, GatewayState, ReportAck
from suanli.service.gateway_feed import poll_state
from suanli.service.gateway_reports import submit_report
from suanli.service.runtime import Runtime

__all__ = ["LocalExchangeLink"]

MAX_WAIT_S = 30.0  # as the HTTP endpoint allows


class LocalExchangeLink:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def state(self, etag: str | None, wait_s: float) -> GatewayState:
        """The routing state; with ``etag``, held until it differs or ``wait_s`` passes."""
        return await poll_state(self.rt, etag, min(max(wait_s, 0.0), MAX_WAIT_S))

    async def report(self, report: GatewayReport) -> ReportAck:
        """Record a batch of usage and demand, once per ``batch_id``. A refused batch
        raises the endpoint's problem (``Unprocessable``), as the HTTP link raises 422."""
        return await anyio.to_thread.run_sync(submit_report, self.rt, report)

    async def aclose(self) -> None:
        """Nothing to close: the runtime belongs to the exchange."""
