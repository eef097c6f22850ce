"""``suanli up --demo``: the china-2025 fleet and a stream of sample work.

The fleet's sites and pools belong to one demo seller and are offered at their reserve.
Three demo buyers with funded wallets (one holding a Shanghai voucher grant) submit batch
jobs and a few inference services through the public API. The demo fleet is simulated
(it has no site agents), so the demo also plays its agents: it leases placed jobs,
reports them running, and reports them done after their planned time compressed
``speedup`` times (billing the full planned GPU-hours). The local site of ``suanli up``
is served by a real agent.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.catalog.fleet import load_fleet
from suanli.sdk import ApiError, Client
from suanli.service.accounts import create_tenant, deposit, issue_token
from suanli.service.auth import Role
from suanli.service.runtime import Runtime
from suanli.service.schemas.money import VoucherCreate
from suanli.service.seed import load_fleet_rows
from suanli.service.tables import Account, Tenant
from suanli.service.vouchers import create_program, grant_voucher

__all__ = ["DemoDriver", "DemoSetup", "setup_demo"]

log = logging.getLogger("suanli.service.demo")

BUYERS = ("shanghai-ai-lab", "hangzhou-llm-co", "beijing-university")
# ASSUMPTION: a demo buyer's budget, 2 million yuan each.
DEMO_FUNDS_FEN = 2_000_000 * 100
SELLER = "demo-seller"


@dataclass(frozen=True)
class DemoSetup:
    fleet: str
    sites: int
    pools: int
    gpus: int
    seller_token: str
    buyer_tokens: tuple[str, ...]


def setup_demo(rt: Runtime, fleet_name: str = "china-2025") -> DemoSetup:
    """Load the demo fleet and tenants (once per data directory; later starts reuse them
    with fresh tokens)."""
    fleet = load_fleet(fleet_name)
    now = rt.clock.now()

    def token_of(session: Session, tenant_name: str) -> str:
        t = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one()
        acc = session.scalars(select(Account).where(Account.tenant_id == t.id)).one()
        return issue_token(session, acc.id, now, "demo")[1]

    def run(session: Session) -> DemoSetup:
        if session.scalars(select(Tenant).where(Tenant.name == SELLER)).first() is not None:
            return DemoSetup(
                fleet_name,
                len(fleet.sites),
                len(fleet.pools),
                fleet.gpu_count,
                token_of(session, SELLER),
                tuple(token_of(session, b) for b in BUYERS),
            )
        seller, made = create_tenant(session, SELLER, [("agent", Role.SELLER)], now)
        sites, pools = load_fleet_rows(session, fleet, rt.catalog, seller.id, now)
        tokens = []
        buyer_ids = []
        for name in BUYERS:
            t, accs = create_tenant(session, name, [("demo", Role.BUYER)], now)
            deposit(session, t.id, DEMO_FUNDS_FEN, now, "demo funds")
            tokens.append(accs[0][1])
            buyer_ids.append(t.id)
        operator = session.scalars(select(Tenant).where(Tenant.name == "operator")).first()
        program = create_program(
            session,
            VoucherCreate(
                name="Shanghai compute vouchers 2025 (demo slice)",
                coverage=0.3,
                budget_fen=200_000 * 100,
                per_buyer_cap_fen=100_000 * 100,
            ),
            operator.id if operator else seller.id,
            now,
        )
        grant_voucher(session, program.id, buyer_ids[0], 50_000 * 100, now)
        return DemoSetup(fleet_name, sites, pools, fleet.gpu_count, made[0][1], tuple(tokens))

    return rt.db.transact(run)


class DemoDriver:
    """Submits sample work and plays the agents, on a daemon thread."""

    def __init__(
        self,
        url: str,
        setup: DemoSetup,
        *,
        seed: int = 0,
        tick_s: float = 2.0,
        speedup: float = 600.0,
        max_pending: int = 150,
    ) -> None:
        self.url = url
        self.setup = setup
        self.rng = np.random.default_rng(seed)
        self.tick_s = tick_s
        self.speedup = speedup
        self.max_pending = max_pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[str, float] = {}  # job id → wall time it is done
        self.submitted = 0
        self.finished = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suanli-demo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        buyers = [Client(self.url, t, retries=1) for t in self.setup.buyer_tokens]
        seller = Client(self.url, self.setup.seller_token, retries=1)
        while not self._stop.is_set():
            try:
                buyers[0].me()
                break
            except ApiError:
                self._stop.wait(0.2)
        services = 0
        while not self._stop.is_set():
            try:
                pending = len(buyers[0].jobs(state="pending", limit=1000))
                if pending < self.max_pending:
                    for _ in range(int(self.rng.integers(1, 4))):
                        b = buyers[int(self.rng.integers(0, len(buyers)))]
                        b.submit(self._job())
                        self.submitted += 1
                if services < 6 and self.rng.random() < 0.15:
                    buyers[services % len(buyers)].submit(self._service(services))
                    services += 1
                self._agent(seller)
            except ApiError as exc:
                log.warning("demo: %s", exc)
            self._stop.wait(self.tick_s)
        for c in [*buyers, seller]:
            c.close()

    def _agent(self, seller: Client) -> None:
        now = time.monotonic()
        for lease in seller.lease(limit=200):
            seller.report(lease["job_id"], "running")
            self._running[lease["job_id"]] = now + lease["planned_h"] * 3600 / self.speedup
        for job_id, done_at in list(self._running.items()):
            if done_at <= now:
                del self._running[job_id]
                try:
                    seller.report(job_id, "succeeded", exit_code=0)
                    self.finished += 1
                except ApiError as exc:  # cancelled meanwhile
                    log.info("demo agent: %s", exc)

    def _job(self) -> dict[str, object]:
        r = self.rng
        gpus = int(
            r.choice([1, 2, 4, 8, 8, 16, 32, 64], p=[0.2, 0.1, 0.15, 0.25, 0.1, 0.1, 0.06, 0.04])
        )
        hours = float(np.exp(r.normal(np.log(2.0), 0.8)))
        # ASSUMPTION: bids lognormal around 11 yuan per H100-hour (bench.instances uses 9;
        # a little higher here so that most demo work clears and the queue moves).
        bid = round(float(np.exp(r.normal(np.log(11.0), 0.4))), 2)
        city = str(r.choice(["Shanghai", "Beijing", "Hangzhou", "Shenzhen", "Chengdu", "Wuhan"]))
        spec: dict[str, object] = {
            "kind": "job",
            "name": f"demo-{'train' if gpus >= 16 else 'finetune'}-{self.submitted}",
            "image": "pytorch/pytorch:2.4.0-cuda12.1",
            "command": "torchrun train.py",
            "resources": {"gpus": gpus, "min_mem_gb": 80.0 if r.random() < 0.15 else 0.0},
            "work_ref_gpu_hours": round(gpus * hours, 2),
            "bid_cny_per_ref_gpu_hour": bid,
            "data": {"origin_city": city, "size_gb": round(float(np.exp(r.uniform(0, 7))), 1)},
            "interruptible": bool(r.random() < 0.5),
        }
        # Every demo job has a deadline, so work that never clears leaves the queue.
        spec["deadline_h"] = round(hours * float(r.uniform(1.5, 6.0)) + 1.0, 2)
        return spec

    def _service(self, k: int) -> dict[str, object]:
        shapes = [
            ("Llama-3.1-8B", 1020, 250, 2000, 100, {"Shanghai": 30, "Hangzhou": 10}),
            ("Qwen2.5-7B", 300, 60, 150, 25, {"Beijing": 20, "Tianjin": 5}),
            ("Llama-3.1-70B", 1020, 250, 2000, 200, {"Shenzhen": 15, "Guangzhou": 15}),
            ("DeepSeek-R1-Distill-Qwen-32B", 1000, 800, 2000, 80, {"Chengdu": 10, "Chongqing": 10}),
        ]
        model, prompt, output, ttft, tpot, demand = shapes[k % len(shapes)]
        return {
            "kind": "service",
            "name": f"demo-{model.lower()}-{k}",
            "model": model,
            "demand_rps": demand,
            "tokens": {"prompt": prompt, "output": output},
            "slo": {"ttft_ms": ttft, "tpot_ms": tpot},
            "bid_cny_per_m_output_tokens": round(float(self.rng.uniform(6, 20)), 2),
        }
