"""Hard filters and candidate pools for inference services, one service at a time.

A service k is split into items (k, c): the demand d_kc (requests/s) of city c. On pool p
a replica of k needs g_kp GPUs (the performance model's tensor-parallel degree) and serves
cap_kp requests/s within TPOT, with a predicted TTFT t_kp (prefill at its operating point).

- filters, in order: replica fits the GPU and meets TPOT (cap_kp > 0) → GPU allowed →
  latency: RTT(c, site(p)) + t_kp ≤ TTFT_k → (locality, for the status-quo policy) →
  private: a site private to one buyer takes only that buyer's work;
- value per request/s-hour: val_k = 3600 × the value of one request at the token bids
  (input, cached input, output; see ``valuation``), in yuan;
- surplus per GPU-hour on p: u = val_k · cap_kp / g_kp / (1 + φ) − r_p; price test u > 0;
- size of the item on p in GPUs: d_kc · g_kp / cap_kp (fractional; replicas are made
  integral when placed).

A service with ``min_replicas`` keeps an item for its largest city even at zero demand,
and that item also keeps the pools that fail only the price test: the owner asked for
those replicas whatever its demand pays, so the plan may put them on any pool that meets
the SLO there (see ``replica_bounds``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.market.arrays import PoolArrays
from suanli.market.context import MarketContext
from suanli.market.sizing import ReplicaSpec, replica_spec
from suanli.market.snapshot import InferenceService, MarketSnapshot
from suanli.market.valuation import value_cny_per_rps_hour

__all__ = [
    "SERVICE_HARD_STAGES",
    "SERVICE_STAGES",
    "ReplicaBounds",
    "ServiceCandidates",
    "service_candidates",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SERVICE_HARD_STAGES = ("tpot", "gpu-not-allowed", "latency", "locality", "private")
SERVICE_STAGES = (*SERVICE_HARD_STAGES, "price", "capacity")


@dataclass(frozen=True)
class ServiceItem:
    """Demand of one city for one service."""

    service: int
    city: str
    demand_rps: float
    value_cny_per_rps_hour: float
    stage_fail: tuple[int, ...]
    best_latency: tuple[float, float, str] | None  # (rtt_ms, ttft_ms, pool id) closest to SLO
    cheapest_pool: str | None
    cheapest_cost_cny_per_rps_hour: float


@dataclass(frozen=True, slots=True)
class ReplicaBounds:
    """A service's replica bounds; ``anchor_item`` is its largest city's item (−1: none)."""

    min_replicas: int = 0
    max_replicas: int | None = None
    anchor_item: int = -1


@dataclass(frozen=True)
class ServiceCandidates:
    items: list[ServiceItem]
    item: I64
    pool: I64
    u: F64
    size: F64  # GPUs for the whole item on that pool
    rank: F64
    gpus_per_replica: I64  # per pair
    cap_rps: F64  # per pair: one replica's requests/s
    rtt_ms: F64  # per pair
    ttft_ms: F64  # per pair (model prefill at the operating point)
    specs: dict[tuple[int, int], ReplicaSpec]  # (service, gpu model index)
    bounds: tuple[ReplicaBounds, ...] = ()  # per service; empty: no bounds

    def bounds_of(self, k: int) -> ReplicaBounds:
        return self.bounds[k] if k < len(self.bounds) else ReplicaBounds()


def service_candidates(
    snapshot: MarketSnapshot,
    ctx: MarketContext,
    pools: PoolArrays,
    city_site_rtt_ms: F64,
    *,
    max_candidates: int | None = None,
    order: str = "surplus",
    respect_latency: bool = True,
    local_only: bool = False,
) -> ServiceCandidates:
    """Split services into city items and keep each item's best candidate pools.

    ``city_site_rtt_ms`` has one row per ``ctx.cities`` entry and one column per snapshot
    site. ``respect_latency=False`` is for the latency-blind broker baseline.
    """
    fee = snapshot.rules.fee_rate
    k_keep = max_candidates or snapshot.rules.candidate_pools
    city_at = {c: i for i, c in enumerate(ctx.cities)}
    n_pools = len(pools.ids)
    site_prov = np.array(pools.site_province, dtype=object)[pools.site_index]
    site_hub = np.array(pools.site_hub, dtype=object)[pools.site_index]

    items: list[ServiceItem] = []
    parts: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("item", "pool", "u", "size", "rank", "g", "cap", "rtt", "ttft")
    }
    specs: dict[tuple[int, int], ReplicaSpec] = {}
    bounds: list[ReplicaBounds] = []
    private = pools.private_codes([s.buyer for s in snapshot.services])
    for k, svc in enumerate(snapshot.services):
        g_of_model, cap_of_model, ttft_of_model = _sizing(svc, k, ctx, pools, specs)
        g = g_of_model[pools.gpu_index] if n_pools else np.zeros(0)
        cap = cap_of_model[pools.gpu_index] if n_pools else np.zeros(0)
        ttft = ttft_of_model[pools.gpu_index] if n_pools else np.zeros(0)
        ok_perf = cap > 0
        ok_gpu = (
            np.array([gn in svc.allowed_gpus for gn in pools.gpu_names], dtype=np.bool_)[
                pools.gpu_index
            ]
            if svc.allowed_gpus is not None
            else np.ones(n_pools, dtype=np.bool_)
        )
        if private is None:
            ok_private = np.ones(n_pools, dtype=np.bool_)
        else:
            ok_private = (private[0] == -1) | (private[0] == private[1][k])
        value = value_cny_per_rps_hour(svc)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(ok_perf, value * cap / np.maximum(g, 1) / (1.0 + fee), 0.0) - pools.reserve
            cost_per_rps = np.where(
                ok_perf, pools.reserve * (1.0 + fee) * g / np.maximum(cap, 1e-12), np.inf
            )
        anchor = _anchor_city(svc)
        anchor_item = -1
        for city, demand in svc.demand_rps.items():
            if demand <= 0 and city != anchor:
                continue
            c = city_at[city]
            rtt = city_site_rtt_ms[c][pools.site_index]
            ok_lat = (rtt + ttft <= svc.ttft_ms) if respect_latency else np.ones(n_pools, bool)
            if local_only:
                prov = ctx.cities[city].province
                hub = ctx.hub_of_province(prov)
                ok_local = (site_prov == prov) | ((site_hub == hub) & (hub is not None))
            else:
                ok_local = np.ones(n_pools, dtype=np.bool_)
            ok_price = u > 0
            size = demand * g / np.maximum(cap, 1e-12)
            ok_free = pools.free >= g
            fails = []
            alive = np.ones(n_pools, dtype=np.bool_)
            best_latency = None
            masks = (ok_perf, ok_gpu, ok_lat, ok_local, ok_private, ok_price, ok_free)
            for stage, mask in zip(SERVICE_STAGES, masks, strict=True):
                fails.append(int(np.count_nonzero(alive & ~mask)))
                if stage == "latency" and np.any(late := alive & ~mask):
                    # Closest to the SLO among the pools it rejects (the others meet it).
                    idx = int(np.argmin(np.where(late, rtt + ttft, np.inf)))
                    best_latency = (float(rtt[idx]), float(ttft[idx]), pools.ids[idx])
                alive &= mask
                if stage == SERVICE_HARD_STAGES[-1]:
                    hard = alive.copy()
            cheapest_idx = int(np.argmin(np.where(hard, cost_per_rps, np.inf))) if n_pools else -1
            cheapest_ok = n_pools > 0 and bool(hard[cheapest_idx])
            items.append(
                ServiceItem(
                    service=k,
                    city=city,
                    demand_rps=float(demand),
                    value_cny_per_rps_hour=value,
                    stage_fail=tuple(fails),
                    best_latency=best_latency,
                    cheapest_pool=pools.ids[cheapest_idx] if cheapest_ok else None,
                    cheapest_cost_cny_per_rps_hour=(
                        float(cost_per_rps[cheapest_idx]) if cheapest_ok else float("inf")
                    ),
                )
            )
            if order == "surplus":
                score = u
            elif order == "cheapest":
                score = -cost_per_rps
            else:
                score = -rtt
            scored = np.where(alive, score, -np.inf)
            if city == anchor:
                # Where the owner's minimum replicas may go: any pool meeting the SLO with
                # room for one replica, worth it or not (behind those that are).
                anchor_item = len(items) - 1
                scored = np.where(alive | (hard & ok_free), score, -np.inf)
            top = (
                np.argpartition(-scored, k_keep - 1)[:k_keep]
                if n_pools > k_keep
                else np.arange(n_pools)
            )
            top = top[np.isfinite(scored[top])]
            i = len(items) - 1
            parts["item"].append(np.full(len(top), i, dtype=np.int64))
            parts["pool"].append(top.astype(np.int64))
            parts["u"].append(u[top])
            parts["size"].append(size[top])
            parts["rank"].append(scored[top])
            parts["g"].append(g[top].astype(np.int64))
            parts["cap"].append(cap[top])
            parts["rtt"].append(rtt[top])
            parts["ttft"].append(ttft[top])
        bounds.append(ReplicaBounds(svc.min_replicas, svc.max_replicas, anchor_item))

    def cat(name: str, dtype: type) -> npt.NDArray[np.generic]:
        return np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros(0, dtype)

    return ServiceCandidates(
        items=items,
        item=cat("item", np.int64),  # type: ignore[arg-type]
        pool=cat("pool", np.int64),  # type: ignore[arg-type]
        u=cat("u", np.float64),  # type: ignore[arg-type]
        size=cat("size", np.float64),  # type: ignore[arg-type]
        rank=cat("rank", np.float64),  # type: ignore[arg-type]
        gpus_per_replica=cat("g", np.int64),  # type: ignore[arg-type]
        cap_rps=cat("cap", np.float64),  # type: ignore[arg-type]
        rtt_ms=cat("rtt", np.float64),  # type: ignore[arg-type]
        ttft_ms=cat("ttft", np.float64),  # type: ignore[arg-type]
        specs=specs,
        bounds=tuple(bounds),
    )


def _anchor_city(svc: InferenceService) -> str | None:
    """The city minimum replicas are placed for: the largest demand (first by name on a
    tie); None when the service asks for no minimum."""
    if svc.min_replicas <= 0 or not svc.demand_rps:
        return None
    return min(svc.demand_rps, key=lambda c: (-svc.demand_rps[c], c))


def _sizing(
    svc: InferenceService,
    k: int,
    ctx: MarketContext,
    pools: PoolArrays,
    specs: dict[tuple[int, int], ReplicaSpec],
) -> tuple[F64, F64, F64]:
    """Per GPU model: GPUs per replica, replica requests/s, predicted TTFT (ms)."""
    n = len(pools.gpu_names)
    g = np.zeros(n)
    cap = np.zeros(n)
    ttft = np.full(n, np.inf)
    model = ctx.models[svc.model]
    for m, gpu_name in enumerate(pools.gpu_names):
        spec = replica_spec(
            model,
            ctx.accelerators[gpu_name],
            svc.prompt_tokens,
            svc.output_tokens,
            svc.ttft_ms,
            svc.tpot_ms,
        )
        specs[(k, m)] = spec
        g[m] = spec.gpus
        cap[m] = spec.rps
        ttft[m] = spec.ttft_ms
    return g, cap, ttft
