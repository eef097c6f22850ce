"""Per-request outcomes → one :class:`GatewayReport` (usage per key × service × city,
demand per service × city). Pure and deterministic: a batch read back from its journal
file after a restart is the report it was when first sent.

Outcomes: "ok"; "error" (the replica or the way to it failed); "aborted" (the replica
refused the request with a 4xx, or the client left mid-stream — tokens seen are billed);
"rejected" (a 429 for back-pressure). Usage: ``requests`` counts what was sent upstream,
``errors`` the part that did not end "ok"; tokens are what the replica reported
(``input_tokens`` are the prompt tokens that missed the prefix cache; a stream cut short
bills the output chunks seen; a finished stream the engine reported no usage for, the
gateway's estimate — :mod:`suanli.gateway.upstream`). Demand: ``requests`` counts every
request routed for the service, including ``rejected`` (demand the plan did not meet);
``slo_total`` the "ok" and "error" ones, ``slo_met`` those that met the SLO — never one
a last-resort replica beyond the city's routes answered. Requests refused for a key's
own limits are not demand and are not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from suanli.gateway.meter import Outcome
from suanli.gateway.protocol import DemandLine, GatewayReport, UsageLine

__all__ = ["build_report", "tokens_per_key"]


def build_report(
    outcomes: Iterable[Outcome], batch_id: str, gateway: str, start: float, end: float
) -> GatewayReport:
    usage: dict[tuple[str, str, str], list[int]] = {}
    demand: dict[tuple[str, str], list[int]] = {}
    for o in outcomes:
        d = demand.setdefault((o.service_id, o.city), [0] * 7)
        d[0] += 1
        if o.status == "rejected":
            d[6] += 1
            continue
        d[1] += o.prompt_tokens
        d[2] += o.cached_tokens
        d[3] += o.output_tokens
        if o.status != "aborted":  # the client's doing: not the service's SLO to judge
            d[4] += o.slo_met
            d[5] += 1
        u = usage.setdefault((o.key_id, o.service_id, o.city), [0] * 5)
        u[0] += 1
        u[1] += o.status != "ok"
        u[2] += o.prompt_tokens - o.cached_tokens
        u[3] += o.cached_tokens
        u[4] += o.output_tokens
    return GatewayReport(
        batch_id=batch_id,
        gateway=gateway,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(max(start, end), UTC),
        usage=[
            UsageLine(
                key_id=k,
                service_id=s,
                city=c,
                requests=u[0],
                errors=u[1],
                input_tokens=u[2],
                cached_input_tokens=u[3],
                output_tokens=u[4],
            )
            for (k, s, c), u in sorted(usage.items())
        ],
        demand=[
            DemandLine(
                service_id=s,
                city=c,
                requests=d[0],
                prompt_tokens=d[1],
                cached_tokens=d[2],
                output_tokens=d[3],
                slo_met=d[4],
                slo_total=d[5],
                rejected=d[6],
            )
            for (s, c), d in sorted(demand.items())
        ],
    )


def tokens_per_key(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Input + output tokens per key (what a key's daily limit counts)."""
    out: dict[str, int] = {}
    for o in outcomes:
        if o.status != "rejected":
            out[o.key_id] = out.get(o.key_id, 0) + o.prompt_tokens + o.output_tokens
    return out
