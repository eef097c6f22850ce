"""Writing a service's routes (the rows gateways route requests by) in a clearing round.

A service placed whole gets this round's routes in place of its earlier ones
(:func:`replace_routes`); a scale-up (see :mod:`suanli.service.scale_up`) adds its new
routes to the ones its live replicas keep (:func:`add_routes`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from suanli.market.decision import Route
from suanli.service.scale_up import ScaleUp
from suanli.service.tables import ServiceRoute

__all__ = ["add_routes", "replace_routes"]


def replace_routes(
    session: Session, service_id: str, routes: Sequence[Route], round_id: int
) -> None:
    """A service placed whole: this round's routes in place of all its earlier ones."""
    session.execute(delete(ServiceRoute).where(ServiceRoute.service_id == service_id))
    _insert_routes(session, service_id, routes, round_id)


def add_routes(
    session: Session, service_id: str, routes: Sequence[Route], up: ScaleUp, round_id: int
) -> None:
    """A scale-up's routes, added to those the service keeps (``ScaleUp.kept_routes``):
    a kept route stays as it is, unless the replicas left of its round serve less than it
    says (then it is cut to that); the routes of replicas that ended go."""
    for r in session.scalars(select(ServiceRoute).where(ServiceRoute.service_id == service_id)):
        rps = up.kept_routes.get(r.id)
        if rps is None:
            session.delete(r)
        elif abs(r.rps - rps) > 1e-9:
            r.rps = rps
    session.flush()
    _insert_routes(session, service_id, routes, round_id)


def _insert_routes(
    session: Session, service_id: str, routes: Sequence[Route], round_id: int
) -> None:
    if routes:
        session.execute(
            insert(ServiceRoute),
            [
                {
                    "service_id": service_id,
                    "round_id": round_id,
                    "city": r.city,
                    "pool_id": r.pool_id,
                    "rps": r.rps,
                    "rtt_ms": r.rtt_ms,
                    "ttft_ms": r.ttft_ms,
                }
                for r in routes
            ],
        )
