"""Run a scenario under several clearing policies on one shared workload.

The workload (jobs, services, vouchers, outages) is drawn once from the scenario seed and
replayed for every policy, so the policies differ only in how they clear. Results are
deterministic: the same scenario, seed, days and traces give identical numbers.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from suanli.errors import InvalidInput
from suanli.sim.demand import Workload, build_workload
from suanli.sim.metrics import RoundRow
from suanli.sim.runner import PolicyRun
from suanli.sim.scenario import Scenario
from suanli.sim.summary import summarize
from suanli.sim.traces import InferenceTrace, JobsTrace
from suanli.sim.world import World, build_world

__all__ = ["SIM_POLICIES", "PolicyResult", "SimResult", "parse_policies", "simulate"]

SIM_POLICIES = ("local", "cheapest", "nearest", "exchange")
"""Policies that place work (the LP bound places nothing; the MILP is far too slow)."""


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    summary: dict[str, Any]
    rows: list[RoundRow]
    rounds: int
    wall_s: float


@dataclass(frozen=True)
class SimResult:
    scenario: Scenario
    world: World
    workload: Workload
    seed: int
    days: float
    period_h: float
    results: dict[str, PolicyResult]

    @property
    def rounds(self) -> int:
        return round(self.days * 24.0 / self.period_h)


def parse_policies(text: str | Sequence[str]) -> list[str]:
    """Policy names from ``"a,b"`` or a list; InvalidInput naming the valid ones."""
    names = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        raise InvalidInput(f"no policy given; choose from {', '.join(SIM_POLICIES)}")
    for n in names:
        if n not in SIM_POLICIES:
            raise InvalidInput(
                f"unknown policy {n!r} for simulation; choose from {', '.join(SIM_POLICIES)}"
            )
    if len(set(names)) != len(names):
        raise InvalidInput("a policy is listed twice")
    return names


def simulate(
    scenario: Scenario,
    policies: Sequence[str] = SIM_POLICIES,
    *,
    days: float | None = None,
    seed: int | None = None,
    inference_trace: InferenceTrace | None = None,
    jobs_trace: JobsTrace | None = None,
    on_round: Callable[[str], None] | None = None,
    workers: int = 1,
) -> SimResult:
    """Run ``scenario`` once per policy; ``on_round(policy)`` after every clearing round.

    With ``workers`` > 1 the policies run in that many processes at once; each rebuilds
    the same world and workload from the scenario and seed, so results do not change.
    """
    names = parse_policies(policies)
    if days is not None and not 0 < days <= 366:
        raise InvalidInput(f"days must be in (0, 366], got {days}")
    if workers < 1:
        raise InvalidInput(f"workers must be ≥ 1, got {workers}")
    run_days = scenario.days if days is None else days
    run_seed = scenario.seed if seed is None else seed
    job = _Job(scenario, run_days, run_seed, inference_trace, jobs_trace)
    world, workload = job.build()
    if workers == 1 or len(names) == 1:
        results = {n: job.run(n, world, workload, on_round) for n in names}
    else:
        results = _in_processes(job, names, min(workers, len(names)), on_round)
    return SimResult(
        scenario=scenario,
        world=world,
        workload=workload,
        seed=run_seed,
        days=run_days,
        period_h=scenario.market.period_min / 60.0,
        results={n: results[n] for n in names},
    )


@dataclass(frozen=True)
class _Job:
    """Everything a run needs, picklable so a worker process can rebuild it."""

    scenario: Scenario
    days: float
    seed: int
    inference_trace: InferenceTrace | None
    jobs_trace: JobsTrace | None

    def build(self) -> tuple[World, Workload]:
        world = build_world(self.scenario)
        workload = build_workload(
            self.scenario,
            world,
            seed=self.seed,
            days=self.days,
            inference_trace=self.inference_trace,
            jobs_trace=self.jobs_trace,
        )
        return world, workload

    def run(
        self,
        name: str,
        world: World,
        workload: Workload,
        on_round: Callable[[str], None] | None,
    ) -> PolicyResult:
        horizon_h = self.days * 24.0
        t0 = time.perf_counter()
        run = PolicyRun(
            world,
            workload,
            name,
            self.scenario.sellers,
            period_h=self.scenario.market.period_min / 60.0,
            horizon_h=horizon_h,
            on_round=(lambda: on_round(name)) if on_round is not None else None,
        )
        meter = run.run()
        return PolicyResult(
            policy=name,
            summary=summarize(world, workload, meter, horizon_h),
            rows=meter.rows,
            rounds=run.rounds,
            wall_s=time.perf_counter() - t0,
        )


_ticks: Any = None  # the worker process's progress queue (set by its initializer)


def _init_worker(ticks: Any) -> None:
    global _ticks
    _ticks = ticks


_DONE = ""  # put by a worker after a policy's last tick (no policy has an empty name)


def _run_in_worker(job: _Job, name: str) -> PolicyResult:
    world, workload = job.build()
    try:
        return job.run(name, world, workload, _ticks.put if _ticks is not None else None)
    finally:
        if _ticks is not None:
            _ticks.put(_DONE)


def _in_processes(
    job: _Job, names: list[str], workers: int, on_round: Callable[[str], None] | None
) -> dict[str, PolicyResult]:
    ctx = multiprocessing.get_context("spawn")
    ticks = ctx.Queue()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(ticks,)
    ) as pool:
        futures = {pool.submit(_run_in_worker, job, n): n for n in names}
        pending = set(futures)
        done = 0
        while pending:
            _, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            done += _drain(ticks, on_round)
        results = {futures[f]: f.result() for f in futures}
        # A finished future does not mean its worker's last ticks have crossed the pipe
        # (a queue's feeder thread sends them): wait for every policy's end marker.
        deadline = time.monotonic() + 30.0  # a marker lost with its worker: stop waiting
        while done < len(names) and time.monotonic() < deadline:
            done += _drain(ticks, on_round, block_s=1.0)
        return results


def _drain(ticks: Any, on_round: Callable[[str], None] | None, block_s: float | None = None) -> int:
    """Pass on the ticks waiting in ``ticks`` (the first one waited for up to
    ``block_s``); how many policies' end markers came with them."""
    done = 0
    while True:
        try:
            name = ticks.get(timeout=block_s) if block_s else ticks.get_nowait()
        except queue.Empty:
            return done
        block_s = None
        if name == _DONE:
            done += 1
        elif on_round is not None:
            on_round(name)
