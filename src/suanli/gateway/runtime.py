"""One gateway's moving parts and their lifetime: the state it serves from, the keys, the
breakers, the slots, the metrics, the journal, and the three background tasks (state
long-poll, usage reporter, probes of ejected replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable

from suanli.gateway.admission import Admission
from suanli.gateway.breaker import Breaker, Pass
from suanli.gateway.config import GatewayConfig
from suanli.gateway.h1 import H1Error, H1Pool
from suanli.gateway.journal import Batch, Journal
from suanli.gateway.keys import KeyTable
from suanli.gateway.link import ExchangeLink
from suanli.gateway.meter import GatewayMetrics
from suanli.gateway.protocol import GatewayState
from suanli.gateway.reporter import Reporter
from suanli.gateway.routing import ANY_CITY
from suanli.gateway.state import StateView, follow_state

__all__ = ["Gateway"]

log = logging.getLogger("suanli.gateway")
_MAX_CITY = 60


class Gateway:
    """Everything one gateway holds. :meth:`start` and :meth:`stop` run in the event loop
    that serves it (the app's lifespan calls them; an exchange embedding the app without
    its lifespan calls them itself)."""

    def __init__(
        self,
        link: ExchangeLink,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.config = config
        self.wall = wall
        self.metrics = GatewayMetrics()
        self.keys = KeyTable(wall)
        self.breaker = Breaker(clock, config.breaker)
        self.admission = Admission()
        self.view: StateView | None = None
        self.picks: dict[tuple[str, str], dict[str, int]] = {}
        self.journal: Journal | None = None
        self.pool: H1Pool | None = None
        self.reporter: Reporter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._trusted: dict[str, bool] = {}
        self.metrics.in_flight.set_function(lambda: sum(self.admission.in_flight.values()))
        self.metrics.queued.set_function(lambda: self.admission.queued)
        self.metrics.unacked_batches.set_function(
            lambda: len(self.journal.pending) if self.journal else 0
        )

    async def start(self) -> None:
        cfg = self.config
        self.journal = Journal(cfg.data_dir, cfg.name, self.wall)
        self.pool = H1Pool(cfg.connect_timeout_s, cfg.read_timeout_s)
        self.reporter = Reporter(
            self.journal,
            self.link,
            self._acked,
            cfg.report_interval_s,
            on_refused=lambda batch: self.keys.acknowledged(batch.tokens),
        )
        self._tasks = [
            asyncio.create_task(follow_state(self.link, cfg.state_wait_s, self.apply)),
            asyncio.create_task(self.reporter.run()),
            asyncio.create_task(self._probe_loop()),
        ]

    async def stop(self) -> None:
        """Stop the tasks, deliver the journal once (what fails stays on disk for the next
        start), close the connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.reporter is not None and not await self.reporter.flush(timeout_s=5.0):
            log.warning("usage batches left in %s for the next start", self.config.data_dir)
        if self.journal is not None:
            self.journal.close()
        if self.pool is not None:
            await self.pool.aclose()
        await self.link.aclose()

    def apply(self, state: GatewayState) -> None:
        """Serve from ``state`` from now on."""
        self.view = StateView(state)
        self.keys.load(state.keys)
        self.breaker.forget(set(self.view.replicas))
        self.admission.set_limits({r: e.max_concurrency for r, e in self.view.replicas.items()})
        self.picks.clear()
        self.metrics.state_age.set(self.wall())

    def city_of(self, header: str | None, client_host: str | None) -> str:
        """The demand city of a request: this gateway's own; else a trusted edge's
        header; else any city."""
        if self.config.city:
            return self.config.city
        if (
            header
            and len(header) <= _MAX_CITY
            and header.isprintable()
            and client_host
            and self._is_trusted(client_host)
        ):
            return header
        return ANY_CITY

    def picks_for(self, service_id: str, city: str) -> dict[str, int]:
        return self.picks.setdefault((service_id, city), {})

    def _is_trusted(self, host: str) -> bool:
        hit = self._trusted.get(host)
        if hit is None:
            try:
                ip = ipaddress.ip_address(host)
                hit = any(ip in net for net in self.config.trusted_edges)
            except ValueError:
                hit = False
            if len(self._trusted) < 10_000:
                self._trusted[host] = hit
        return hit

    def _acked(self, batch: Batch) -> None:
        self.keys.acknowledged(batch.tokens)
        now = self.wall()
        for end in batch.ends:
            self.metrics.metering_lag.observe(max(0.0, now - end))

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.probe_interval_s)
            due = self.breaker.due_for_probe()
            if due and self.view is not None and self.pool is not None:
                for result in await asyncio.gather(
                    *(self._probe(rid) for rid in due), return_exceptions=True
                ):
                    if isinstance(result, Exception):
                        log.warning("probing a replica failed: %r", result)

    async def _probe(self, rid: str) -> None:
        """The half-open trial as an active health check of the replica."""
        replica = self.view.replicas.get(rid) if self.view else None
        if replica is None or self.pool is None or self.breaker.acquire(rid) is not Pass.TRIAL:
            return
        try:
            resp = await self.pool.request(
                replica.endpoint, replica.health_path, None, method="GET", timeout_s=2.0
            )
            await resp.read()
            healthy = 200 <= resp.status < 300
        except H1Error:
            healthy = False
        if healthy:
            self.breaker.success(rid, Pass.TRIAL)
            log.info("replica %s answers its health check again", rid)
        else:
            self.breaker.failure(rid, Pass.TRIAL)
