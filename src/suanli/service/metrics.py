"""Prometheus metrics, on a registry owned by one application (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.price = Gauge(
            "suanli_pool_price_cny_per_gpu_hour",
            "Clearing price of each pool in the latest round",
            ["pool"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "suanli_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
