"""What the gateway measures: Prometheus series for operators, and per-request outcomes
for the exchange's usage (billing) and demand (planning) reports.

Series carry ``service`` (the service's name) and ``city`` labels only — never a key or a
user, so /metrics can be shown without leaking who calls what, and the series count
stays bounded by services × cities. Each gateway has its own registry: the exchange that
embeds one appends :meth:`GatewayMetrics.render` to its own ``/metrics``.

A request *meets the SLO* when its TTFT ≤ ``ttft_ms`` and its TPOT ≤ ``tpot_ms``
(streaming), or when its total time ≤ ``ttft_ms + tpot_ms × output tokens`` (not
streaming, where the first token is not seen); a failed request does not, nor does one
a *last-resort* replica answered (outside the city's routes: its network round trip
breaks the TTFT SLO from that city: the plan knows that round trip, the gateway cannot
see the client's WAN). Those are counted in ``suanli_gateway_slo_fallback_total``;
streams whose usage the engine did not report, and the gateway estimated, in
``suanli_gateway_usage_estimated_total`` (see :mod:`suanli.gateway.upstream`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "Outcome", "Timing", "meets_slo"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished request as the journal keeps it (``status``: "ok", "error" — failed
    upstream or on the way —, or "rejected" — 429 for back-pressure)."""

    key_id: str
    service_id: str
    city: str
    status: str
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    slo_met: bool
    end: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds from the gateway's receipt of the request (None: not reached)."""

    total: float
    queue: float = 0.0
    ttft: float | None = None
    tpot: float | None = None


def meets_slo(
    timing: Timing, output_tokens: int, ttft_ms: float, tpot_ms: float, stream: bool
) -> bool:
    if stream:
        if timing.ttft is None or timing.ttft * 1000.0 > ttft_ms:
            return False
        return timing.tpot is None or timing.tpot * 1000.0 <= tpot_ms
    return timing.total * 1000.0 <= ttft_ms + tpot_ms * output_tokens


class GatewayMetrics:
    """The gateway's Prometheus series on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # labelled children, looked up once per service × city (the hot path's cost)
        self._status: dict[tuple[str, str, int], Counter] = {}
        self._timing: dict[tuple[str, str], tuple[Histogram, ...]] = {}
        self._tokens: dict[tuple[str, str], tuple[Counter, ...]] = {}
        self._once: dict[tuple[Counter, str, str], Counter] = {}
        labels = ("service", "city")
        r = self.registry
        self.ttft = Histogram(
            "suanli_gateway_ttft_seconds",
            "Time to first token (gateway receipt → first content token sent).",
            labels,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.tpot = Histogram(
            "suanli_gateway_tpot_seconds",
            "Mean time between output chunks of a streamed answer.",
            labels,
            registry=r,
            buckets=_TPOT_BUCKETS,
        )
        self.queue = Histogram(
            "suanli_gateway_queue_seconds",
            "Time waiting for a replica slot (back-pressure).",
            labels,
            registry=r,
            buckets=_QUEUE_BUCKETS,
        )
        self.request = Histogram(
            "suanli_gateway_request_seconds",
            "Whole request time at the gateway.",
            labels,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.requests = Counter(
            "suanli_gateway_requests",
            "Requests answered, by HTTP status.",
            (*labels, "status"),
            registry=r,
        )
        self.tokens = Counter(
            "suanli_gateway_tokens",
            "Tokens metered (input: prompt tokens that missed the prefix cache).",
            (*labels, "kind"),
            registry=r,
        )
        self.slo_fallback = Counter(
            "suanli_gateway_slo_fallback",
            "Requests answered by a last-resort replica outside the city's routes "
            "(every SLO-meeting one was down): judged not meeting the SLO.",
            labels,
            registry=r,
        )
        self.usage_estimated = Counter(
            "suanli_gateway_usage_estimated",
            "Streams that ended without the engine's usage: tokens estimated "
            "(output = content chunks, prompt = characters / 4).",
            labels,
            registry=r,
        )
        self.metering_lag = Histogram(
            "suanli_gateway_metering_lag_seconds",
            "Request end → its usage acknowledged by the exchange.",
            registry=r,
            buckets=_LAG_BUCKETS,
        )
        self.unacked_batches = Gauge(
            "suanli_gateway_unacked_batches",
            "Usage batches journaled and not yet acknowledged by the exchange.",
            registry=r,
        )
        self.in_flight = Gauge(
            "suanli_gateway_in_flight", "Requests in flight to replicas.", registry=r
        )
        self.queued = Gauge("suanli_gateway_queued", "Requests waiting for a slot.", registry=r)
        self.state_age = Gauge(
            "suanli_gateway_state_received_timestamp_seconds",
            "When the last state came from the exchange (Unix time; 0: never).",
            registry=r,
        )

    def status(self, service: str, city: str, code: int) -> None:
        key = (service, city, code)
        child = self._status.get(key)
        if child is None:
            child = self._status[key] = self.requests.labels(service, city, str(code))
        child.inc()

    def finished(self, service: str, city: str, timing: Timing) -> None:
        request, queue, ttft, tpot = self._timing_children(service, city)
        request.observe(timing.total)
        queue.observe(timing.queue)
        if timing.ttft is not None:
            ttft.observe(timing.ttft)
        if timing.tpot is not None:
            tpot.observe(timing.tpot)

    def counted(self, service: str, city: str, prompt: int, cached: int, output: int) -> None:
        key = (service, city)
        kinds = self._tokens.get(key)
        if kinds is None:
            kinds = self._tokens[key] = tuple(
                self.tokens.labels(service, city, k) for k in ("input", "cached_input", "output")
            )
        for child, n in zip(kinds, (prompt - cached, cached, output), strict=True):
            if n > 0:
                child.inc(n)

    def inc(self, counter: Counter, service: str, city: str) -> None:
        """``counter`` (labelled service × city) + 1, its child looked up once."""
        key = (counter, service, city)
        child = self._once.get(key)
        if child is None:
            child = self._once[key] = counter.labels(service, city)
        child.inc()

    def _timing_children(self, service: str, city: str) -> tuple[Histogram, ...]:
        key = (service, city)
        children = self._timing.get(key)
        if children is None:
            children = self._timing[key] = tuple(
                h.labels(service, city) for h in (self.request, self.queue, self.ttft, self.tpot)
            )
        return children

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
