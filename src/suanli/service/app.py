"""The application factory: settings in, a FastAPI app (with its runtime) out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from sqlalchemy import text

from suanli import __version__
from suanli.catalog import load_catalog
from suanli.gateway import render_gateway_metrics
from suanli.market.context import MarketContext
from suanli.service.accounts import bootstrap_operator
from suanli.service.auth import Principal, TokenCache
from suanli.service.clearing import RoundSummary
from suanli.service.clock import ServiceClock, WallClock
from suanli.service.db import Database
from suanli.service.deps import optional_principal
from suanli.service.loop import ClearingLoop
from suanli.service.metrics import Metrics
from suanli.service.middleware import EdgeMiddleware
from suanli.service.migrate import upgrade
from suanli.service.problems import install_problem_handlers
from suanli.service.ratelimit import RateLimits
from suanli.service.routers import access, agent, fleet, gateway, market, money, serving, work
from suanli.service.runtime import Runtime
from suanli.service.serving_mount import ServingDispatch, exchange_gateway
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
        tokens=TokenCache(),
    )
    limits = RateLimits.of(
        settings.rate_limit_per_s,
        settings.rate_limit_burst,
        settings.auth_failures_per_min,
        settings.auth_failure_burst,
    )

    gw_app = exchange_gateway(rt) if settings.gateway_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if settings.clearing_enabled:
            loop = ClearingLoop(rt, settings.clear_interval_s, on_round=on_round)
            loop.start()
        app.state.loop = loop
        try:
            async with AsyncExitStack() as stack:
                if gw_app is not None:
                    await stack.enter_async_context(gw_app.router.lifespan_context(gw_app))
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
    app.state.limits = limits
    app.state.loop = None
    install_problem_handlers(app)
    for r in (access, fleet, work, money, market, agent, serving, gateway):
        app.include_router(r.router)

    app.state.gateway = gw_app
    _system_routes(app, rt)
    app.add_middleware(
        EdgeMiddleware,
        metrics=rt.metrics,
        max_body_bytes=settings.max_body_bytes,
        limits=limits,
        tokens=rt.tokens,
    )
    if gw_app is not None:
        app.add_middleware(ServingDispatch, gateway=gw_app)  # outermost: before the edge
    return app


def _system_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get("/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers HTTP. It does not touch the database, so an
        outage there never gets a live exchange restarted; see ``/readyz``."""
        return {"status": "ok", "database": rt.db.dialect}

    @app.get("/readyz", tags=["system"], responses={503: {"description": "database down"}})
    def readyz() -> dict[str, str]:
        """Readiness: 200 when the database answers, else a 503 problem with
        ``Retry-After`` (take the exchange out of a load balancer, do not restart it)."""
        with rt.db.read() as s:
            s.execute(text("SELECT 1"))
        return {"status": "ready", "database": rt.db.dialect}

    @app.get("/metrics", tags=["system"], response_class=Response)
    def metrics(
        principal: Annotated[Principal | None, Depends(optional_principal)],
    ) -> Response:
        """Prometheus metrics: rounds, solve time, pending work, utilization, HTTP latency
        and clearing prices summarized over pools (min, mean, max, how many), for anyone
        who can reach the port. The price of each pool
        (``suanli_pool_price_cny_per_gpu_hour{pool=…}``) names sellers' pools, so it is
        shown only to a request with an operator token; any other valid token sees the
        anonymous view, an invalid one gets 401."""
        detail = principal is not None and principal.is_operator
        body = rt.metrics.render(pools=detail)
        if app.state.gateway is not None:
            body += render_gateway_metrics(app.state.gateway)
        return Response(body, media_type="text/plain; version=0.0.4")


def runtime_of(app: FastAPI) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


def bootstrap(app: FastAPI) -> str | None:
    """Create the first operator if there is none; its token (shown once) or None."""
    rt = runtime_of(app)
    return rt.db.transact(lambda s: bootstrap_operator(s, rt.clock.now()))
