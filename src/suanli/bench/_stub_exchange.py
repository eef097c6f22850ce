"""The stub exchange of ``suanli bench gateway``, run in its own process.

It serves one static gateway state — the stand-in as the one replica of one service
(:data:`SERVICE`), one key (:data:`KEY`), one city route (:data:`CITY`) — on the real
long-poll path, and acknowledges usage reports, counting what they carry (``GET
/stub/totals``, read with :func:`stub_totals`). Everything but ``/healthz`` and
``/stub/totals`` wants the operator token (:data:`TOKEN`). :func:`state_json` writes the
state the driver hands it in a file.

    python -m suanli.bench._stub_exchange --port P --state FILE --token T
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CITY", "KEY", "SERVICE", "TOKEN", "main", "state_json", "stub_totals"]

KEY = "sk-bench-gateway-key"
TOKEN = "sl_bench_operator_token_0123456789"
SERVICE = "bench-svc"
CITY = "Shanghai"


def state_json(upstream: str) -> str:
    """The static gateway state: ``upstream`` as the one replica of the one service."""
    from suanli.gateway.keys import digest
    from suanli.gateway.protocol import (
        CityRoute,
        GatewayState,
        KeyEntry,
        ReplicaEntry,
        ServiceEntry,
    )

    svc = ServiceEntry(
        id="svc-bench",
        name=SERVICE,
        tenant_id="t-bench",
        model="standin",
        ttft_ms=500.0,
        tpot_ms=50.0,
        replicas=[
            ReplicaEntry(
                allocation_id="a-bench",
                pool_id="p-bench",
                endpoint=upstream,
                health="healthy",
                max_concurrency=4096,
            )
        ],
        routes={CITY: [CityRoute(pool_id="p-bench", weight=1000.0, rtt_ms=1.0, in_plan=True)]},
    )
    key = KeyEntry(id="k-bench", digest=digest(KEY), service_id=svc.id)
    state = GatewayState(etag="bench-1", generated_at=datetime.now(UTC), services=[svc], keys=[key])
    return state.model_dump_json()


def _exchange_app(state_json: str, token: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from suanli.gateway.protocol import GatewayReport, ReportAck

    etag = json.loads(state_json)["etag"]
    seen: set[str] = set()
    totals = {"batches": 0, "duplicates": 0, "requests": 0, "output_tokens": 0}

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {token}"

    async def state(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"detail": "operator token required"}, status_code=401)
        if request.query_params.get("etag") == etag:  # static: nothing will change
            await asyncio.sleep(min(30.0, float(request.query_params.get("wait_s", "0"))))
        return Response(state_json, media_type="application/json")

    async def reports(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"detail": "operator token required"}, status_code=401)
        report = GatewayReport.model_validate_json(await request.body())
        duplicate = report.batch_id in seen
        if duplicate:
            totals["duplicates"] += 1
        else:
            seen.add(report.batch_id)
            totals["batches"] += 1
            totals["requests"] += sum(u.requests - u.errors for u in report.usage)
            totals["output_tokens"] += sum(u.output_tokens for u in report.usage)
        ack = ReportAck(batch_id=report.batch_id, duplicate=duplicate)
        return Response(ack.model_dump_json(), media_type="application/json")

    async def stub_totals(request: Request) -> Response:
        return JSONResponse(totals)

    return Starlette(
        routes=[
            Route("/v1/gateway/state", state),
            Route("/v1/gateway/reports", reports, methods=["POST"]),
            Route("/stub/totals", stub_totals),
            Route("/healthz", lambda r: JSONResponse({"status": "ok"})),
        ]
    )


def stub_totals(exchange: str) -> dict[str, int]:
    """What the stub at ``exchange`` has counted: batches, duplicates, requests, tokens."""
    data: dict[str, int] = httpx.get(exchange + "/stub/totals", timeout=5.0, trust_env=False).json()
    return data


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m suanli.bench._stub_exchange``: serve the state in a file until killed."""
    parser = argparse.ArgumentParser(prog="python -m suanli.bench._stub_exchange")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)

    import uvicorn

    app = _exchange_app(Path(args.state).read_text(encoding="utf-8"), args.token)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
