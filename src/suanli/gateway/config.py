"""How one gateway runs: its name, where it stands, whom it trusts, and its timings."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from suanli.gateway.breaker import BreakerParams

__all__ = ["GatewayConfig", "IpNetwork", "parse_networks"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Settings of one gateway.

    ``city`` is where an edge gateway stands: its users' requests are routed as that
    city's demand. A gateway without a city (the one inside the exchange) routes by the
    ``x-suanli-city`` header, but only from ``trusted_edges`` (edge gateways forwarding
    their users), so that nobody picks a city by sending a header; otherwise it uses the
    ``"*"`` routes. ``data_dir`` holds the metering journal (private to this gateway).
    """

    name: str
    data_dir: Path
    city: str | None = None
    trusted_edges: tuple[IpNetwork, ...] = ()
    report_interval_s: float = 1.0  # journal segment → batch → report, this often
    state_wait_s: float = 20.0  # long-poll wait of GET /v1/gateway/state
    max_attempts: int = 3  # replicas tried per request (connection failures, 502/3/4)
    connect_timeout_s: float = 1.0  # to a replica; short: a dead one is skipped fast
    read_timeout_s: float = 300.0  # between bytes from a replica (long prompts, slow tokens)
    queue_floor_s: float = 0.05  # the shortest wait for a slot before a 429
    probe_interval_s: float = 0.5  # active health checks of ejected replicas, this often
    breaker: BreakerParams = field(default_factory=lambda: BreakerParams())


def parse_networks(items: list[str] | tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """``"10.0.0.0/8"``, ``"127.0.0.1"`` … as networks; ValueError names a bad one."""
    out: list[IpNetwork] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(out)
