"""The exchange's own inference gateway: the OpenAI-compatible endpoints on ``suanli up``.

The gateway app (``suanli.gateway``) runs inside the exchange's process with an
in-process link (``gateway_link.LocalExchangeLink``: no HTTP hop, no token). Requests to
its paths are dispatched to it *before* the exchange's own middleware: inference keys are
not API tokens (the gateway checks them and applies per-key limits), and the hot path
needs none of the API's body buffering. Its series are appended to the exchange's
``/metrics``. Callers' city: the ``x-suanli-city`` header from a trusted edge
(``gateway_trusted_edges``), else ``gateway_city``, else the round's routes for any city.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from suanli.gateway import GatewayConfig, create_gateway_app, parse_networks
from suanli.service.gateway_link import LocalExchangeLink
from suanli.service.runtime import Runtime

__all__ = ["GATEWAY_PATHS", "ServingDispatch", "exchange_gateway"]

GATEWAY_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})


def exchange_gateway(rt: Runtime) -> Starlette:
    """The gateway app of this exchange (its lifespan is entered by the exchange's)."""
    s = rt.settings
    config = GatewayConfig(
        name="exchange",
        data_dir=s.data_dir / "gateway",
        city=s.gateway_city,
        trusted_edges=parse_networks(tuple(s.gateway_trusted_edges)),
    )
    return create_gateway_app(LocalExchangeLink(rt), config)


class ServingDispatch:
    """Send the inference paths to the gateway app, everything else to the exchange."""

    def __init__(self, app: ASGIApp, *, gateway: ASGIApp) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in GATEWAY_PATHS:
            await self.gateway(scope, receive, send)
        else:
            await self.app(scope, receive, send)
