"""Prometheus metrics, on registries owned by one application (no global state).

Two registries: ``registry`` holds what anyone may read (counts, times, aggregates);
``pool_registry`` holds series labelled by a seller's pool, rendered only on request
(``render(pools=True)``, for operators).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics"]


class Metrics:
    """Rounds, solve time, pending work, utilization, prices and HTTP latency."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.rounds = Counter(
            "suanli_clearing_rounds", "Clearing rounds run", ["outcome"], registry=r
        )
        self.solve_seconds = Histogram(
            "suanli_clearing_solve_seconds",
            "Time the market engine took to clear one round",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.round_seconds = Histogram(
            "suanli_clearing_round_seconds",
            "Whole round: read, clear, write",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.pending_jobs = Gauge("suanli_pending_jobs", "Jobs waiting to be placed", registry=r)
        self.pending_services = Gauge(
            "suanli_pending_services", "Services waiting for replicas", registry=r
        )
        self.placed = Counter(
            "suanli_placements", "Work placed by the clearing loop", ["kind"], registry=r
        )
        self.gpus_offered = Gauge("suanli_gpus_offered", "GPUs on offer", registry=r)
        self.gpus_allocated = Gauge("suanli_gpus_allocated", "GPUs held by placed work", registry=r)
        self.utilization = Gauge(
            "suanli_utilization_ratio", "GPUs allocated / GPUs on offer", registry=r
        )
        self.pool_registry = CollectorRegistry(auto_describe=True)
        self.price = Gauge(
            "suanli_pool_price_cny_per_gpu_hour",
            "Clearing price of each pool in the latest round",
            ["pool"],
            registry=self.pool_registry,
        )
        r.register(_PriceSummary(self.price))
        self.http_seconds = Histogram(
            "suanli_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def render(self, *, pools: bool = False) -> bytes:
        """The exposition text; per-pool series only if ``pools``."""
        text = generate_latest(self.registry)
        return text + generate_latest(self.pool_registry) if pools else text


class _PriceSummary(Collector):
    """Clearing prices over all pools, without naming any: how many, min, mean, max."""

    def __init__(self, price: Gauge) -> None:
        self.price = price

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = [s.value for fam in self.price.collect() for s in fam.samples]
        name = "suanli_price_cny_per_gpu_hour"
        yield GaugeMetricFamily("suanli_pools_priced", "Pools with a clearing price", len(values))
        if not values:
            return
        for stat, value in (
            ("min", min(values)),
            ("mean", sum(values) / len(values)),
            ("max", max(values)),
        ):
            yield GaugeMetricFamily(
                f"{name}_{stat}", f"The {stat} clearing price over all pools", value
            )
