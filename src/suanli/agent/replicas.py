"""Inference replicas on a site: ports, endpoints, health, and handovers between placements.

A replica's command (e.g. ``vllm serve … --port $PORT``) gets a free port in ``PORT``
(unless the service's env sets its own); the agent reports ``http://<advertise host>:
<port>`` as its endpoint and probes ``<endpoint><health_path>``: 2xx is healthy; no
answer is "starting" for the start grace after it began running, "unhealthy" after.

A replica is placed for one billing horizon at a time. When a placement reaches its
horizon while the service goes on, the service's next placement on the same pool names
it (``Lease.continues``) and takes the running replica over — same process, same
endpoint. A stop order that comes first *parks* the replica until then; one that no
placement takes over before its deadline is stopped.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from enum import StrEnum

import httpx

from suanli.agent.exchange import Lease
from suanli.agent.journal import Held

__all__ = ["Health", "ReplicaBook", "endpoint_of", "free_port", "probe"]


class Health(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (the replica binds it a moment later; a clash shows up
    as an unhealthy replica, not a wrong endpoint)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def endpoint_of(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def probe(
    http: httpx.Client, endpoint: str, path: str, running_for_s: float, start_grace_s: float
) -> Health:
    """The replica's health from one GET of ``path`` (timeouts come from ``http``)."""
    try:
        resp = http.get(endpoint + path)
    except httpx.HTTPError:
        return Health.STARTING if running_for_s < start_grace_s else Health.UNHEALTHY
    if resp.is_success:
        return Health.HEALTHY
    return Health.STARTING if running_for_s < start_grace_s else Health.UNHEALTHY


class ReplicaBook:
    """The agent's replicas: since when each runs, their health, the parked ones."""

    def __init__(
        self,
        advertise_host: str,
        start_grace_s: float,
        handover_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self.host = advertise_host
        self.start_grace_s = start_grace_s
        self.handover_s = handover_s
        self._mono = monotonic
        self._since: dict[str, float] = {}  # allocation → running since (monotonic)
        self._parked: dict[str, tuple[Held, float]] = {}  # allocation → (it, deadline)
        self._http = httpx.Client(timeout=2.0)

    def endpoint(self, held: Held) -> str | None:
        return endpoint_of(self.host, held.port) if held.port is not None else None

    def port_for(self, lease: Lease) -> int:
        given = lease.env.get("PORT", "")
        return int(given) if given.isdigit() else free_port(self.host)

    def started(self, allocation_id: str) -> None:
        self._since[allocation_id] = self._mono()

    def forget(self, held: Held) -> None:
        self._since.pop(held.allocation_id, None)
        self._parked.pop(held.allocation_id, None)

    def park(self, held: Held) -> None:
        self._parked[held.allocation_id] = (held, self._mono() + self.handover_s)

    def parked_ids(self) -> set[str]:
        return set(self._parked)

    def claim(self, lease: Lease, held: dict[str, Held]) -> Held | None:
        """The running replica ``lease`` continues (same service, pool and size), if this
        agent holds it; it is the new placement's from now on."""
        old = held.get(lease.continues or "")
        if (
            old is None
            or old.handle is None
            or old.reported != "running"
            or (old.lease.item_id, old.lease.pool_id, old.lease.gpus)
            != (lease.item_id, lease.pool_id, lease.gpus)
        ):
            return None
        self._parked.pop(old.allocation_id, None)
        self._since[lease.allocation_id] = self._since.pop(old.allocation_id, self._mono())
        return old

    def expired(self) -> list[Held]:
        """Parked replicas no placement took over in time (forgotten here)."""
        now = self._mono()
        out = [held for held, deadline in self._parked.values() if now >= deadline]
        for held in out:
            self.forget(held)
        return out

    def health(self, held: Iterable[Held]) -> list[dict[str, str]]:
        """Probe every running replica that is not parked, for the next heartbeat."""
        parked = self.parked_ids()
        out = []
        for h in held:
            endpoint = self.endpoint(h)
            if h.lease.kind != "replica" or h.reported != "running" or endpoint is None:
                continue
            if h.allocation_id in parked:
                continue
            since = self._since.setdefault(h.allocation_id, self._mono())
            path = h.lease.health_path or "/health"
            state = probe(self._http, endpoint, path, self._mono() - since, self.start_grace_s)
            out.append(
                {"allocation_id": h.allocation_id, "health": state.value, "endpoint": endpoint}
            )
        return out

    def close(self) -> None:
        self._http.close()
