"""One policy over a workload: the engine on a simulated clock.

The handlers below are the whole simulator. Each drives the same
:class:`~suanli.engine.state.ExchangeState` the live exchange uses, and clears with the
same market policies (``make_policy``):

- ``Arrival``: a buyer submits a batch job (``submit_job``);
- ``Round`` every period: finish work that is done (``advance``), let buyers who waited
  past their patience give up (``cancel``), free every service replica
  (``release_services``), set each service's demand for the coming period to what the
  demand estimator plans from the requests measured over the last one (``sim.serving``),
  clear a snapshot and apply the decision; the replicas then serve the true demand; then
  sellers adapt their reserves;
- ``SiteDown`` / ``SiteUp``: ``fail_site`` preempts work (kept up to its last checkpoint,
  pending again) and ``recover_site`` brings the nodes back;
- ``End``: meter what still runs up to the end of the horizon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from suanli.engine.clock import SimClock
from suanli.engine.ledger_rules import capture_share
from suanli.engine.lifecycle import WorkState
from suanli.engine.records import UsageRecord
from suanli.engine.state import ExchangeState
from suanli.market.decision import Decision
from suanli.market.policies import make_policy
from suanli.market.valuation import value_cny_per_rps_hour
from suanli.sim.demand import Workload
from suanli.sim.events import Environment
from suanli.sim.metrics import Meter, RoundRow
from suanli.sim.scenario import SellerSpec
from suanli.sim.sellers import make_reserve_policy
from suanli.sim.serving import Planner, serve
from suanli.sim.world import World

__all__ = ["Arrival", "End", "PolicyRun", "Round", "SiteDown", "SiteUp"]


@dataclass(frozen=True, slots=True)
class Arrival:
    at_h: float
    index: int


@dataclass(frozen=True, slots=True)
class Round:
    at_h: float


@dataclass(frozen=True, slots=True)
class SiteDown:
    at_h: float
    site_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SiteUp:
    at_h: float
    site_id: str


@dataclass(frozen=True, slots=True)
class End:
    at_h: float


Event = Arrival | Round | SiteDown | SiteUp | End


class PolicyRun:
    """Simulate ``workload`` on ``world`` under the clearing policy ``policy``."""

    def __init__(
        self,
        world: World,
        workload: Workload,
        policy: str,
        sellers: SellerSpec,
        *,
        period_h: float,
        horizon_h: float,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        self.world = world
        self.workload = workload
        self.policy = make_policy(policy, world.ctx)
        self.period_h = period_h
        self.horizon_h = horizon_h
        self.on_round = on_round
        pools = [world.fleet.pools[p] for p in world.pool_ids]  # type: ignore[index]
        speed = dict(zip(world.pool_ids, world.speed.tolist(), strict=True))
        self.state = ExchangeState(
            world.fleet.sites, pools, speed, rules=world.rules, vouchers=workload.vouchers
        )
        for svc in workload.services:
            self.state.submit_service(svc)
        initial = np.array([p.reserve_cny_per_gpu_hour for p in pools])
        self.reserve = initial.copy()
        self.sellers = make_reserve_policy(sellers, world.power_cost_cny_per_gpu_hour, initial)
        self.meter = Meter(world)
        self.clock = SimClock()
        self.env: Environment[Event] = Environment(self.clock)
        self.pending: dict[str, float] = {}  # job id → when its buyer started waiting
        self.placed_once: set[str] = set()
        self.rounds = 0
        self._index = world.pool_index
        self._site_pools: dict[str, list[int]] = {}
        for i, sid in enumerate(world.pool_site):
            self._site_pools.setdefault(sid, []).append(i)
        # per service: TTFT SLO (ms) and value per request/s-hour at its token bids
        self._service_terms: dict[str, tuple[float, float]] = {
            s.id: (s.ttft_ms, value_cny_per_rps_hour(s)) for s in workload.services
        }
        self._planner = Planner(workload.estimator)
        hub_of = np.array(world.pool_hub, dtype=object)
        self._hub_masks = [hub_of == h for h in world.hubs]

    def run(self) -> Meter:
        """Run to the horizon; the meter holds everything measured."""
        if self.workload.jobs:
            self.env.schedule(Arrival(self.workload.jobs[0].submitted_at_h, 0))
        for o in self.workload.outages:
            self.env.schedule(SiteDown(o.start_h, o.site_id, o.reason))
            self.env.schedule(SiteUp(o.end_h, o.site_id))
        self.env.schedule(Round(0.0))
        self.env.schedule(End(self.horizon_h))
        self.env.run(self.handle, self.horizon_h)
        return self.meter

    def handle(self, ev: Event) -> list[Event]:
        if isinstance(ev, Arrival):
            return self._arrival(ev)
        if isinstance(ev, Round):
            return self._round(ev.at_h)
        if isinstance(ev, SiteDown):
            self._site_down(ev)
        elif isinstance(ev, SiteUp):
            self._site_up(ev)
        else:
            self._end(ev.at_h)
        return []

    # ----- handlers -------------------------------------------------------------------
    def _arrival(self, ev: Arrival) -> list[Event]:
        job = self.workload.jobs[ev.index]
        self.state.submit_job(job, ev.at_h, checkpoint_every_h=self.workload.checkpoint_every_h)
        self.pending[job.id] = ev.at_h
        self.meter.job_arrived(job.id, job.buyer, job.bid_cny_per_ref_gpu_hour)
        self.meter.jobs.arrived += 1
        self.meter.jobs.arrived_ref_gpu_hours += job.work_ref_gpu_hours
        nxt = ev.index + 1
        if nxt < len(self.workload.jobs):
            return [Arrival(self.workload.jobs[nxt].submitted_at_h, nxt)]
        return []

    def _round(self, t: float) -> list[Event]:
        m, st = self.meter, self.state
        m.integrate(t)
        self._finish(t)
        self._give_up(t)
        st.release_services(t)
        planned, true = self._plan(t)
        decision = self.policy.clear(st.snapshot(t))
        placed = 0
        for tr in st.apply(decision, t):
            if tr.to is WorkState.PLACED:
                placed += 1
                self.pending.pop(tr.item_id, None)
                if tr.item_id not in self.placed_once:
                    self.placed_once.add(tr.item_id)
                    m.jobs.placed += 1
                    m.jobs.wait_h_sum += t - st.jobs[tr.item_id].submitted_at_h
        # The engine skips the rare placement it cannot find nodes for; count them.
        replicas = sum(r.replicas for so in decision.services for r in so.replicas)
        kept = sum(len(rec.replicas) for rec in st.services.values())
        m.skipped_placements += len(decision.jobs) - placed + replicas - kept
        m.cur_demand_rps = sum(sum(d.values()) for d in true.values())
        m.cur_planned_rps = sum(sum(d.values()) for d in planned.values())
        m.routes, m.capacity = self._serve(decision, true)
        self._drain()
        self._refresh_free()
        prices: dict[str, float] = {pp.pool_id: pp.price_cny_per_gpu_hour for pp in decision.prices}
        self._record(t, placed, prices)
        self._adapt_reserves()
        self.rounds += 1
        if self.on_round is not None:
            self.on_round()
        nxt = t + self.period_h
        return [Round(nxt)] if nxt < self.horizon_h - 1e-9 else []

    def _plan(self, t: float) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        """Set every service's demand to the estimator's plan; (planned, true) requests/s
        per service id and city for the round starting at ``t``."""
        planned: dict[str, dict[str, float]] = {}
        true: dict[str, dict[str, float]] = {}
        r = self.rounds - 1  # the round that just ended
        for k, svc in enumerate(self.workload.services):
            measured = self.workload.measured(k, r) if r >= 0 else None
            planned[svc.id] = self._planner.plan(k, svc, measured, t)
            true[svc.id] = self.workload.demand_rps(k, t)
            self.state.set_service_demand(svc.id, planned[svc.id])
        return planned, true

    def _serve(
        self, decision: Decision, true: dict[str, dict[str, float]]
    ) -> tuple[list[tuple[int, float, bool, float]], list[tuple[int, float]]]:
        """Each route's pool, requests/s served of the true demand, whether RTT + server
        TTFT meets the SLO, and the buyer's value per request/s-hour; and the replicas'
        capacity per pool (requests/s)."""
        routes: list[tuple[int, float, bool, float]] = []
        capacity: list[tuple[int, float]] = []
        for s in decision.services:
            ttft_ms, value = self._service_terms[s.service_id]
            got = serve(s, true[s.service_id], ttft_ms)
            routes += [(self._index[p], x, ok, value) for p, x, ok in got.routes if x > 0]
            capacity += [(self._index[p], c) for p, c in got.capacity.items()]
        return routes, capacity

    def _site_down(self, ev: SiteDown) -> None:
        self.meter.integrate(ev.at_h)
        for tr in self.state.fail_site(ev.site_id, ev.at_h, ev.reason):
            if tr.to is WorkState.PENDING:
                self.pending[tr.item_id] = ev.at_h
                self.meter.jobs.preempted += 1
        pools = self._site_pools.get(ev.site_id, [])
        self.meter.is_down[pools] = True
        self.meter.drop_routes(set(pools))
        self._drain()
        self._refresh_free()

    def _site_up(self, ev: SiteUp) -> None:
        self.meter.integrate(ev.at_h)
        self.state.recover_site(ev.site_id)
        self.meter.is_down[self._site_pools.get(ev.site_id, [])] = False
        self._refresh_free()

    def _end(self, t: float) -> None:
        """Meter work still running at the horizon (it keeps running; the run stops)."""
        m, st = self.meter, self.state
        m.integrate(t)
        self._finish(t)
        m.meter(st.release_services(t))
        st.usage.clear()
        for rec in st.jobs.values():
            a = rec.allocation
            if rec.state is WorkState.RUNNING and a is not None:
                hours = max(0.0, t - a.started_at_h)
                share = hours / a.planned_h if a.planned_h > 0 else 0.0
                partial = UsageRecord(
                    allocation_id=a.id,
                    item_id=a.item_id,
                    kind=a.kind,
                    pool_id=a.pool_id,
                    from_h=a.started_at_h,
                    to_h=t,
                    gpu_hours=hours * a.gpus,
                    charge=capture_share(a.payment, share),
                )
                m.meter([partial])
        m.routes = []
        m.capacity = []

    # ----- helpers --------------------------------------------------------------------
    def _finish(self, t: float) -> None:
        m, st = self.meter, self.state
        transitions, _ = st.advance(t)
        done: list[str] = []
        for tr in transitions:
            rec = st.jobs[tr.item_id]
            if tr.to is WorkState.SUCCEEDED:
                m.jobs.completed += 1
                m.held[self._index[tr.pool_id or ""]] += (t - tr.at_h) * rec.job.gpus
            elif tr.to is WorkState.FAILED:
                m.jobs.missed_deadline += 1
                self.pending.pop(tr.item_id, None)
            done.append(tr.item_id)
        self._drain()
        self._forget(done)

    def _give_up(self, t: float) -> None:
        patience = self.workload.patience_h
        gone = [j for j, since in self.pending.items() if t - since >= patience - 1e-9]
        for job_id in gone:
            self.state.cancel(job_id, t, f"buyer gave up after waiting {patience:g} h")
            del self.pending[job_id]
            self.meter.jobs.gave_up += 1
        self._forget(gone)

    def _forget(self, job_ids: list[str]) -> None:
        # Finished records are summarized in the meter; dropping them keeps every round's
        # snapshot and advance proportional to live work, not to the whole history.
        for job_id in job_ids:
            self.state.jobs.pop(job_id, None)

    def _drain(self) -> None:
        self.meter.meter(self.state.usage)
        self.state.usage.clear()

    def _refresh_free(self) -> None:
        # The engine's node state, read directly (sum of a list is C-fast); a pool's nodes go
        # down and up together with its site, so a down pool has no free GPUs.
        nodes, down = self.state.nodes, self.meter.is_down.tolist()
        self.meter.set_free(
            0 if d else sum(nodes[p].free) for p, d in zip(self.world.pool_ids, down, strict=True)
        )

    def _record(self, t: float, placed: int, prices: dict[str, float]) -> None:
        w, m = self.world, self.meter
        up = np.where(m.is_down, 0.0, w.capacity_gpus)
        busy = up - m.free
        if t >= self.horizon_h - 24.0 - 1e-9:
            m.busy_last_day += busy
            m.rounds_last_day += 1
        price = np.array([prices.get(p, np.nan) for p in w.pool_ids])
        busy_h, up_h, price_h = [], [], []
        for mask in self._hub_masks:
            cap_up = float(up[mask].sum())
            busy_h.append(float(busy[mask].sum()))
            up_h.append(cap_up)
            ok = mask & ~np.isnan(price)
            wts = w.capacity_gpus[ok]
            price_h.append(float((price[ok] * wts).sum() / wts.sum()) if wts.sum() else np.nan)
        running = sum(1 for r in self.state.jobs.values() if r.state is WorkState.RUNNING)
        served = sum(r[1] for r in m.routes)
        ok_rps = sum(r[1] for r in m.routes if r[2])
        m.rows.append(
            RoundRow(
                t_h=t,
                busy_by_hub=tuple(busy_h),
                up_by_hub=tuple(up_h),
                price_by_hub=tuple(price_h),
                jobs_pending=len(self.pending),
                jobs_running=running,
                jobs_placed=placed,
                demand_rps=m.cur_demand_rps,
                served_rps=served,
                slo_ok_rps=ok_rps,
                planned_rps=m.cur_planned_rps,
            )
        )

    def _adapt_reserves(self) -> None:
        w, m = self.world, self.meter
        with np.errstate(invalid="ignore", divide="ignore"):
            busy_share = np.where(m.is_down, np.nan, 1.0 - m.free / w.capacity_gpus)
        self.reserve = self.sellers.update(self.reserve, busy_share, self.period_h)
        self.state.reserve.update(zip(w.pool_ids, self.reserve.tolist(), strict=True))
