"""Inference gateways: the routing state they serve from (long-polled) and the batches of
usage and demand they report. Operators only: edge gateways run with an operator token,
the exchange's own gateway calls the same functions in process (``gateway_link``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from suanli.gateway.protocol import GatewayReport, GatewayState, ReportAck
from suanli.service.deps import IdempotencyKey, Operator, Rt
from suanli.service.gateway_feed import poll_state
from suanli.service.gateway_reports import submit_report
from suanli.service.problems import PROBLEM_RESPONSES

__all__ = ["router"]

router = APIRouter(prefix="/v1/gateway", tags=["gateway"], responses=PROBLEM_RESPONSES)

Etag = Annotated[
    str | None,
    Query(
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="the etag of the state the gateway has; absent: answer at once",
    ),
]
WaitS = Annotated[
    float,
    Query(
        ge=0,
        le=30,
        allow_inf_nan=False,
        description="seconds to hold the answer while the state still has this etag",
    ),
]


@router.get("/state", response_model=GatewayState)
async def get_state(
    rt: Rt, who: Operator, response: Response, etag: Etag = None, wait_s: WaitS = 0.0
) -> GatewayState:
    """Everything a gateway routes by: services, replicas, routes per demand city and
    inference keys (digests). Answered at once when ``etag`` is absent or stale; else
    held until the state changes (a round, a key, a replica's health) or ``wait_s``
    passes, then answered with the state as it is (the same etag: nothing changed)."""
    state = await poll_state(rt, etag, wait_s)
    response.headers["ETag"] = f'"{state.etag}"'
    return state


@router.post("/reports", response_model=ReportAck)
def post_report(
    body: GatewayReport, rt: Rt, who: Operator, key: IdempotencyKey = None
) -> ReportAck:
    """Record one batch of metered usage and measured demand. Exactly once per
    ``batch_id`` (a resent or concurrent twin answers ``duplicate: true`` and adds
    nothing), so the ``Idempotency-Key`` header is optional here (gateways send the
    batch id). A line naming an unknown service refuses the whole batch (422)."""
    return submit_report(rt, body)
