"""The exchange's state as the hot path reads it, and the long-poll that keeps it fresh.

The gateway serves from the last state it received: if the exchange is unreachable it
keeps serving with that (replicas do not vanish because the exchange blinked) and polls
again with a growing pause; a revocation or a new round arrives as soon as the exchange
publishes it (the poll is answered when the etag changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from suanli.gateway.link import ExchangeLink
from suanli.gateway.protocol import GatewayState, KeyEntry, ReplicaEntry, ServiceEntry

__all__ = ["POOL_HEADER", "REPLICA_HEADER", "StateView", "follow_state", "replica_headers"]

log = logging.getLogger("suanli.gateway")
# on every answer that came from a replica (with ``x-suanli-city``: the demand city)
REPLICA_HEADER = "x-suanli-replica"  # its allocation id
POOL_HEADER = "x-suanli-pool"
_REPLICA, _POOL = REPLICA_HEADER.encode(), POOL_HEADER.encode()

Header = tuple[bytes, bytes]


def replica_headers(r: ReplicaEntry) -> tuple[Header, Header]:
    """The response headers naming replica ``r`` and its pool, as sent."""
    return (_REPLICA, r.allocation_id.encode()), (_POOL, r.pool_id.encode())


class StateView:
    """One :class:`GatewayState`, indexed."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.services = {s.id: s for s in state.services}
        self.replicas: dict[str, ReplicaEntry] = {
            r.allocation_id: r for s in state.services for r in s.replicas
        }
        # encoded once per state, not per answer
        self.headers = {rid: replica_headers(r) for rid, r in self.replicas.items()}

    def service_for(self, key: KeyEntry, model: str) -> ServiceEntry | None:
        """The key's service if ``model`` names it (its name, or its id)."""
        s = self.services.get(key.service_id)
        if s is None or model not in (s.name, s.id):
            return None
        return s


async def follow_state(
    link: ExchangeLink, wait_s: float, apply: Callable[[GatewayState], None]
) -> None:
    """Long-poll the exchange forever, calling ``apply`` with every new state."""
    etag: str | None = None
    failures = 0
    while True:
        try:
            state = await link.state(etag, wait_s if etag is not None else 0.0)
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 30 == 0:
                log.warning("exchange unreachable (%s); serving the last state", exc)
            await asyncio.sleep(min(5.0, 0.1 * 2.0 ** min(failures, 6)))
            continue
        if failures:
            log.info("exchange reachable again")
            failures = 0
        if state.etag != etag:
            try:
                apply(state)
            except Exception:  # serve from the last state rather than from none
                log.exception("could not take the exchange's state %s", state.etag)
                await asyncio.sleep(1.0)
                continue
            etag = state.etag
        else:
            await asyncio.sleep(0.02)  # an exchange that does not wait must not spin us
