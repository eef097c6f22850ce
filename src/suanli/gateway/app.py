"""The gateway as an ASGI app: OpenAI-compatible endpoints in front of a service's
replicas, plus health, readiness and metrics.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models
    GET /healthz (the process answers)   GET /readyz (it has a state to serve from)
    GET /metrics (Prometheus; series labelled by service and city only)

Callers authenticate with an inference key of the service (``Authorization: Bearer``) and
name the service in ``model``. Errors come in the OpenAI shape with the right status.
Answers from a replica say which: ``x-suanli-replica``, ``x-suanli-pool``,
``x-suanli-city`` (:mod:`suanli.gateway.proxy`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from suanli.gateway.config import GatewayConfig
from suanli.gateway.errors import error_response
from suanli.gateway.link import ExchangeLink
from suanli.gateway.meter import CONTENT_TYPE
from suanli.gateway.proxy import handle, key_of
from suanli.gateway.runtime import Gateway

__all__ = ["create_gateway_app", "gateway_of", "render_gateway_metrics"]

log = logging.getLogger("suanli.gateway")


def create_gateway_app(link: ExchangeLink, config: GatewayConfig) -> Starlette:
    """The gateway app. Its lifespan starts the state long-poll, the usage reporter and
    the replica probes, and at shutdown delivers the journal once and closes ``link``.
    The :class:`Gateway` is ``app.state.gateway`` (:func:`gateway_of`)."""
    gw = Gateway(link, config)

    async def chat(request: Request) -> Response:
        return await handle(gw, request.scope, request.receive, "/v1/chat/completions")

    async def completions(request: Request) -> Response:
        return await handle(gw, request.scope, request.receive, "/v1/completions")

    async def models(request: Request) -> Response:
        key = key_of(gw, request.headers.get("authorization", ""))
        if isinstance(key, Response):
            return key
        assert gw.view is not None
        s = gw.view.services.get(key.service_id)
        data = (
            []
            if s is None
            else [
                {
                    "id": s.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": s.tenant_id,
                    "root": s.model,
                }
            ]
        )
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if gw.view is None:
            return JSONResponse({"status": "no state from the exchange yet"}, status_code=503)
        return JSONResponse({"status": "ready", "etag": gw.view.state.etag})

    async def metrics(request: Request) -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = _GatewayApp(
        gw,
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.gateway = gw
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, in the OpenAI error shape like everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"{request.method} {request.url.path}: " + (
        "no such endpoint" if status == 404 else "method not allowed"
    )
    return error_response(status, message, "invalid_request_error", None)


class _GatewayApp(Starlette):
    """Starlette, with the two inference routes dispatched before its middleware and
    router: they are the hot path, and need none of it (their errors are answered as
    OpenAI errors by the handler; an unexpected one becomes a 500 without details)."""

    _HOT = frozenset({"/v1/chat/completions", "/v1/completions"})

    def __init__(self, gw: Gateway, **kw: Any) -> None:
        super().__init__(**kw)
        self._gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in self._HOT or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await handle(self._gw, scope, receive, path)
        except Exception:
            log.exception("gateway error on %s", path)
            response = error_response(500, "internal gateway error", "server_error", None)
        await response(scope, receive, send)


def gateway_of(app: Starlette) -> Gateway:
    gw = app.state.gateway
    assert isinstance(gw, Gateway)
    return gw


def render_gateway_metrics(app: Starlette) -> bytes:
    """The gateway's Prometheus series (text format), to append to another /metrics."""
    return gateway_of(app).metrics.render()
