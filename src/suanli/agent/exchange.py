"""The agent's side of the agent API, over the SDK's HTTP client (no FastAPI, no database).

Every call goes from the site to the exchange (pull), so a site behind NAT needs no
inbound connection. Answers become frozen values; the exchange's refusals that the agent
acts on become exceptions: ``Fenced`` (the session ended: register again) and
``Stale`` (a report about work that moved on: drop it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from suanli.agent.backend import Capacity, Limitation
from suanli.errors import SuanliError
from suanli.sdk import ApiError, Client

__all__ = [
    "ExchangeLink",
    "Fenced",
    "HeartbeatReply",
    "Lease",
    "Registration",
    "Stale",
    "StopOrder",
]


class Fenced(SuanliError):
    """The exchange ended this agent's session (its site was taken down, or another agent
    registered for it): register again before anything else."""


class Stale(SuanliError):
    """The exchange refused a report: its work ended or was leased again meanwhile."""


@dataclass(frozen=True, slots=True)
class StopOrder:
    """Stop this allocation's work. ``handover``: a replica whose placement only reached
    its billing horizon; the service's next placement on the same pool may take it over."""

    allocation_id: str
    reason: str
    handover: bool = False


@dataclass(frozen=True, slots=True)
class Registration:
    session: str
    site_id: str
    site_up: bool
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    pools: Mapping[str, str]  # backend pool name → the exchange's pool id
    skipped: Mapping[str, str]  # backend pool name → why the exchange did not take it
    notes: tuple[str, ...]
    stop: tuple[StopOrder, ...]


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    site_up: bool
    stop: tuple[StopOrder, ...]
    heartbeat_interval_s: float
    heartbeat_timeout_s: float


@dataclass(frozen=True, slots=True)
class Lease:
    """One placed job or service replica to run (the exchange's ``LeaseOut``)."""

    allocation_id: str
    lease_token: str
    kind: str  # "job" | "replica"
    item_id: str
    pool_id: str
    gpu: str
    gpus: int
    nodes: int
    command: str | None
    image: str | None
    planned_h: float
    attempt: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every_h: float | None = None
    stop_grace_s: float | None = None
    health_path: str | None = None
    continues: str | None = None  # the replica placement this one may take over

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Lease:
        return cls(
            allocation_id=str(d["allocation_id"]),
            lease_token=str(d["lease_token"]),
            kind=str(d["kind"]),
            item_id=str(d["item_id"]),
            pool_id=str(d["pool_id"]),
            gpu=str(d["gpu"]),
            gpus=int(d["gpus"]),
            nodes=max(1, len(d.get("nodes") or [])),
            command=d.get("command"),
            image=d.get("image"),
            planned_h=float(d["planned_h"]),
            attempt=int(d.get("attempt") or 1),
            env={str(k): str(v) for k, v in (d.get("env") or {}).items()},
            working_dir=d.get("working_dir"),
            checkpoint_dir=d.get("checkpoint_dir"),
            checkpoint_every_h=d.get("checkpoint_every_h"),
            stop_grace_s=d.get("stop_grace_s"),
            health_path=d.get("health_path"),
            continues=d.get("continues"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "allocation_id": self.allocation_id,
            "lease_token": self.lease_token,
            "kind": self.kind,
            "item_id": self.item_id,
            "pool_id": self.pool_id,
            "gpu": self.gpu,
            "gpus": self.gpus,
            "nodes": [[i, 0] for i in range(self.nodes)],
            "command": self.command,
            "image": self.image,
            "planned_h": self.planned_h,
            "attempt": self.attempt,
            "env": dict(self.env),
            "working_dir": self.working_dir,
            "checkpoint_dir": self.checkpoint_dir,
            "checkpoint_every_h": self.checkpoint_every_h,
            "stop_grace_s": self.stop_grace_s,
            "health_path": self.health_path,
            "continues": self.continues,
        }


def _stops(items: Sequence[Mapping[str, Any]]) -> tuple[StopOrder, ...]:
    return tuple(
        StopOrder(str(s["allocation_id"]), str(s["reason"]), bool(s.get("handover", False)))
        for s in items
    )


def _problem_type(exc: ApiError) -> str:
    return str(exc.problem.get("type", "")) if isinstance(exc.problem, dict) else ""


class ExchangeLink:
    """The agent API for one site, as one seller account."""

    def __init__(self, client: Client, site_id: str) -> None:
        self.client = client
        self.site_id = site_id

    def register(
        self,
        capacity: Capacity,
        limitations: Sequence[Limitation],
        held: Sequence[tuple[str, str]],
        *,
        backend: str,
        host: str,
        version: str,
        city: str | None = None,
        site_name: str | None = None,
        reserve_cny_per_gpu_hour: float | None = None,
        extra_limitations: Sequence[tuple[str, str]] = (),
    ) -> Registration:
        """Open a session: the discovered pools, what the agent holds (allocation, token)."""
        body: dict[str, Any] = {
            "site_id": self.site_id,
            "backend": backend,
            "host": host[:100],
            "version": version,
            "pools": [
                {
                    "name": p.name,
                    "gpu_model": p.gpu_model,
                    "gpu_count": p.gpu_count,
                    "gpus_per_node": p.gpus_per_node,
                    "fabric": p.fabric.value,
                    "gpus_free": p.gpus_free,
                    "simulated": p.simulated,
                }
                for p in capacity.pools
            ],
            "limitations": [
                {"feature": str(lim.feature), "reason": lim.reason[:10_000]} for lim in limitations
            ]
            + [{"feature": f, "reason": r} for f, r in extra_limitations],
            "held": [{"allocation_id": a, "lease_token": t} for a, t in held],
        }
        if city is not None:
            body["city"] = city
        if site_name is not None:
            body["site_name"] = site_name
        if reserve_cny_per_gpu_hour is not None:
            body["reserve_cny_per_gpu_hour"] = reserve_cny_per_gpu_hour
        d = self.client.request("POST", "/v1/agent/register", json_body=body)
        return Registration(
            session=str(d["session"]),
            site_id=str(d["site_id"]),
            site_up=bool(d["site_up"]),
            heartbeat_interval_s=float(d["heartbeat_interval_s"]),
            heartbeat_timeout_s=float(d["heartbeat_timeout_s"]),
            pools={str(p["name"]): str(p["pool_id"]) for p in d["pools"]},
            skipped={str(p["name"]): str(p["reason"]) for p in d["skipped"]},
            notes=tuple(str(n) for n in d["notes"]),
            stop=_stops(d["stop"]),
        )

    def heartbeat(
        self,
        session: str,
        held: Sequence[tuple[str, str]],
        replicas: Sequence[Mapping[str, str]] = (),
    ) -> HeartbeatReply:
        body = {
            "site_id": self.site_id,
            "session": session,
            "held": [{"allocation_id": a, "lease_token": t} for a, t in held],
            "replicas": list(replicas),
        }
        d = self._fenced_call("/v1/agent/heartbeat", body)
        return HeartbeatReply(
            site_up=bool(d["site_up"]),
            stop=_stops(d["stop"]),
            heartbeat_interval_s=float(d["heartbeat_interval_s"]),
            heartbeat_timeout_s=float(d["heartbeat_timeout_s"]),
        )

    def lease(self, session: str, limit: int = 100) -> list[Lease]:
        body = {
            "site_id": self.site_id,
            "session": session,
            "kinds": ["job", "replica"],
            "limit": limit,
        }
        return [Lease.from_json(d) for d in self._fenced_call("/v1/agent/leases", body)]

    def report(self, key: str, body: Mapping[str, Any]) -> Any:
        """Send one report under its own Idempotency-Key (a retry reuses it, so the
        exchange applies it once). ``Stale`` when the exchange refuses it as outdated."""
        try:
            return self.client.request(
                "POST", "/v1/agent/reports", json_body=dict(body), idempotency_key=key
            )
        except ApiError as exc:
            if exc.status in (404, 409):
                raise Stale(str(exc)) from None
            raise

    def _fenced_call(self, path: str, body: Mapping[str, Any]) -> Any:
        try:
            return self.client.request("POST", path, json_body=dict(body))
        except ApiError as exc:
            if exc.status == 409 and _problem_type(exc).endswith(":fenced"):
                raise Fenced(str(exc)) from None
            raise
