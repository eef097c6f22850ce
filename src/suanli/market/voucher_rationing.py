"""Rationing voucher budgets: which placements the exchange lets lean on a voucher.

Job j on pool p under program v is worth n·u_jp per hour with the voucher (its coverage
raises what the buyer will pay) and n·u'_jp without. Leaning on the voucher reserves
R_jp yuan of the program's budget and of the buyer's cap: the coverage share of the most
settle can charge, at the price cap reserve + rent (see ``Walk``'s ``rent_cap``), never
more than the share of the bid. Budgets are knapsack constraints; priced at λ ≥ 0 per
yuan, a pair is worth::

    value_jp(λ) = max(n·u_jp − λ·R_jp,  n·u'_jp)

λ comes from a greedy knapsack over the placements the auction made: the highest gain per
yuan reserved, n (u − u') / R, first, until the program's budget or the buyer's cap is
spent; λ is the gain per yuan of the first placement that did not fit (per program, and
per program and buyer). A pair whose reservation alone exceeds what is left never gets
the voucher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.market.arrays import PoolArrays
from suanli.market.job_candidates import JobCandidates
from suanli.market.snapshot import MarketSnapshot, VoucherProgram

__all__ = ["VoucherFacts", "job_values", "ration", "reservations_cny", "voucher_facts"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Matches the walk's reservation: 2 fen of rounding slack on the charge.
_ROUNDING_CNY = 0.02


@dataclass(frozen=True)
class VoucherFacts:
    """Per job pair: the voucher's program and what it changes."""

    program: I64  # −1: no program covers the pair
    buyer: I64  # index into ``buyers``
    buyers: list[str]
    with_voucher: F64  # n·u (yuan per hour)
    without: F64  # n·u'
    bid_cap_cny: F64  # coverage share of the bid: the walk's fallback reservation
    per_price_cny: F64  # reservation per yuan of GPU-hour price: s·(1 + φ)·W / f
    budget_left_cny: F64  # per program
    buyer_left_cny: dict[tuple[int, int], float]  # (program, buyer) → cap left (inf: none)


def voucher_facts(
    snapshot: MarketSnapshot, pools: PoolArrays, jc: JobCandidates, programs: list[VoucherProgram]
) -> VoucherFacts:
    fee = snapshot.rules.fee_rate
    job = jc.item
    n = jc.n[job].astype(np.float64)
    speed = pools.speed[jc.pool]
    s = jc.coverage
    plain_u = speed * jc.bid[job] / (1.0 + fee) - pools.reserve[jc.pool]
    covered = jc.voucher >= 0
    work = jc.work[job]
    buyer_names = sorted({str(j.buyer) for j in snapshot.jobs})
    buyer_at = {b: i for i, b in enumerate(buyer_names)}
    buyer_of_job = np.array([buyer_at[j.buyer] for j in snapshot.jobs], dtype=np.int64)
    buyer_left: dict[tuple[int, int], float] = {}
    pairs = zip(jc.voucher[covered].tolist(), buyer_of_job[job[covered]].tolist(), strict=True)
    for v, b in set(pairs):
        prog = programs[v]
        cap = prog.per_buyer_cap_cny
        spent = prog.spent_by_buyer_cny.get(buyer_names[b], 0.0)
        buyer_left[(v, b)] = np.inf if cap is None else cap - spent
    return VoucherFacts(
        program=jc.voucher.astype(np.int64),
        buyer=buyer_of_job[job] if len(job) else np.zeros(0, dtype=np.int64),
        buyers=buyer_names,
        with_voucher=n * jc.u,
        without=np.where(covered, n * plain_u, n * jc.u),
        bid_cap_cny=np.where(covered, s / np.maximum(1.0 - s, 1e-12) * jc.bid[job] * work, 0.0),
        per_price_cny=np.where(covered, s * (1.0 + fee) * work / speed, 0.0),
        budget_left_cny=np.array([p.budget_cny - p.spent_cny for p in programs], dtype=np.float64),
        buyer_left_cny=buyer_left,
    )


def reservations_cny(facts: VoucherFacts, price: F64, pool: I64) -> F64:
    """R per job pair at GPU-hour prices ``price`` (0 where no program covers it)."""
    at_price = facts.per_price_cny * price[pool] + np.where(facts.program >= 0, _ROUNDING_CNY, 0.0)
    return np.minimum(facts.bid_cap_cny, at_price)


def ration(facts: VoucherFacts, held: I64, reserve_cny: F64, values: F64) -> F64:
    """λ per job pair (yuan of surplus per hour per yuan of budget) from placements ``held``
    that lean on their voucher at pair ``values`` (worth more than without it)."""
    n_buyers = max(len(facts.buyers), 1)
    covered = np.flatnonzero(facts.program >= 0)
    key = facts.program[covered] * n_buyers + facts.buyer[covered]
    keys, key_of = np.unique(key, return_inverse=True)
    key_left = np.array(
        [facts.buyer_left_cny[(int(k) // n_buyers, int(k) % n_buyers)] for k in keys.tolist()],
        dtype=np.float64,
    )
    lam_program = np.zeros(len(facts.budget_left_cny))
    lam_key = np.zeros(len(keys))
    gain = facts.with_voucher - facts.without
    pos_of_pair = np.full(len(facts.program), -1, dtype=np.int64)
    pos_of_pair[covered] = key_of
    cand = held[(facts.program[held] >= 0) & (values[held] > facts.without[held])]
    ratio = gain[cand] / np.maximum(reserve_cny[cand], 1e-12)
    order = np.argsort(-ratio, kind="stable")
    left = facts.budget_left_cny.copy()
    buyer_left = key_left.copy()
    for g, r in zip(cand[order].tolist(), ratio[order].tolist(), strict=True):
        v = int(facts.program[g])
        k = int(pos_of_pair[g])
        need = float(reserve_cny[g])
        if need <= left[v] and need <= buyer_left[k]:
            left[v] -= need
            buyer_left[k] -= need
        elif need > left[v]:
            lam_program[v] = max(lam_program[v], r)
        else:
            lam_key[k] = max(lam_key[k], r)
    lam = np.zeros(len(facts.program))
    prog = facts.program[covered]
    never = reserve_cny[covered] > np.minimum(key_left[key_of], facts.budget_left_cny[prog])
    lam[covered] = np.where(never, np.inf, np.maximum(lam_program[prog], lam_key[key_of]))
    return lam


def job_values(facts: VoucherFacts, lam: F64, reserve_cny: F64) -> F64:
    """n·u per job pair with the voucher priced at λ per yuan reserved."""
    # R > 0 wherever a program covers the pair, so λ = inf prices the voucher out.
    priced = facts.with_voucher - lam * reserve_cny
    return np.where(facts.program >= 0, np.maximum(priced, facts.without), facts.with_voucher)
