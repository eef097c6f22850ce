"""The application factory: settings in, a FastAPI app (with its runtime) out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import text

from suanli import __version__
from suanli.catalog import load_catalog
from suanli.market.context import MarketContext
from suanli.service.accounts import bootstrap_operator
from suanli.service.clearing import RoundSummary
from suanli.service.clock import ServiceClock, WallClock
from suanli.service.db import Database
from suanli.service.loop import ClearingLoop
from suanli.service.metrics import Metrics
from suanli.service.middleware import EdgeMiddleware, TokenBuckets
from suanli.service.migrate import upgrade
from suanli.service.problems import install_problem_handlers
from suanli.service.routers import access, agent, fleet, market, money, work
from suanli.service.runtime import Runtime
from suanli.service.settings import ServiceSettings

__all__ = ["bootstrap", "create_app", "runtime_of"]

DESCRIPTION = """\
suanli (算力): an open compute-power exchange. Sellers publish pools of GPUs with reserve
prices; buyers submit batch jobs and inference services with bids; every few seconds a
clearing round places work where it fits and prices each pool. Money is integer fen on a
double-entry ledger. Errors are RFC 9457 problem documents. POSTs that create work or move
money need an `Idempotency-Key` header.
"""


def create_app(
    settings: ServiceSettings,
    *,
    clock: ServiceClock | None = None,
    on_round: Callable[[RoundSummary], None] | None = None,
) -> FastAPI:
    """Migrate the database and build the app; the clearing loop starts with the app
    (``settings.clearing_enabled``) and stops with it."""
    db = Database(settings.db_url, pool_size=settings.db_pool_size)
    upgrade(db)
    cat = load_catalog()
    rt = Runtime(
        settings=settings,
        db=db,
        clock=clock or WallClock(),
        catalog=cat,
        ctx=MarketContext(
            accelerators=cat.accelerators, models=cat.models, cities=cat.cities, hubs=cat.hubs
        ),
        metrics=Metrics(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if settings.clearing_enabled:
            loop = ClearingLoop(rt, settings.clear_interval_s, on_round=on_round)
            loop.start()
        app.state.loop = loop
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            db.dispose()

    app = FastAPI(
        title="suanli exchange",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.loop = None
    install_problem_handlers(app)
    for r in (access, fleet, work, money, market, agent):
        app.include_router(r.router)

    @app.get("/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        """Liveness and database reachability."""
        with rt.db.read() as s:
            s.execute(text("SELECT 1"))
        return {"status": "ok", "database": rt.db.dialect}

    @app.get("/metrics", tags=["system"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: rounds, solve time, pending work, utilization, prices, HTTP."""
        return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(
        EdgeMiddleware,
        metrics=rt.metrics,
        max_body_bytes=settings.max_body_bytes,
        buckets=TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst),
    )
    return app


def runtime_of(app: FastAPI) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


def bootstrap(app: FastAPI) -> str | None:
    """Create the first operator if there is none; its token (shown once) or None."""
    rt = runtime_of(app)
    return rt.db.transact(lambda s: bootstrap_operator(s, rt.clock.now()))
