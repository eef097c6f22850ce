"""The inference gateway: OpenAI-compatible endpoints that send each user to the replica
the market placed near them, with back-pressure, failover, metering and measured demand.

See :mod:`suanli.gateway.protocol` for what it and the exchange say to each other, and
:func:`create_gateway_app` for the app.
"""

from __future__ import annotations

from suanli.gateway.app import create_gateway_app, gateway_of, render_gateway_metrics
from suanli.gateway.config import GatewayConfig, parse_networks
from suanli.gateway.link import ExchangeLink, HttpExchangeLink, LinkError
from suanli.gateway.runtime import Gateway

__all__ = [
    "ExchangeLink",
    "Gateway",
    "GatewayConfig",
    "HttpExchangeLink",
    "LinkError",
    "create_gateway_app",
    "gateway_of",
    "parse_networks",
    "render_gateway_metrics",
]
