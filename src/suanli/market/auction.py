"""Capacity prices and a tentative assignment: a vectorized ε-auction (Bertsekas).

The problem is the relaxation written in ``duals``, with items kept whole. Items i
(a job, or one city's demand for a service) have candidate pairs (i, p) with size a_ip
(GPUs the item takes on pool p) and value v_ip = a_ip · u_ip (yuan per hour over the
reserve). Choose at most one pool per item::

    maximize    Σ_i v_{i,p(i)}
    subject to  Σ_{i: p(i) = p} a_{i,p}  ≤  c_p          for every pool p

Pool p sells GPU-hours at a rent y_p ≥ 0 (yuan per GPU-hour above its reserve). Facing
rents y, item i's net value on p is v_ip − a_ip y_p; staying out is worth 0.

Jacobi forward auction, one numpy pass per round:

- every unassigned item finds its best pool p1 (net w1) and its second-best net w2
  (0 if staying out is better); an item with w1 ≤ 0 leaves for good (rents only rise);
- it bids, per GPU, β = y_p1 + (w1 − w2) / a_ip1 + ε_i: the most it can offer and still
  prefer p1 by ε_i per GPU;
- each pool ranks the items holding it and the new bids by β and keeps the longest
  prefix that fits its capacity; the others are turned away and bid again next round;
- where a pool turned anyone away its rent rises to the lowest bid it kept.

A holder paid at most its bid, and other rents only rose since, so every holder is
within ε_i per GPU of its best choice at the final rents (ε-complementary slackness),
and a pool with positive rent turned work away. Two devices keep the rounds few:
items join in waves by decreasing best value per GPU (late, low-value items meet rents
already high and mostly leave at once), and an item's ε doubles every few rejections
up to ``eps_max``, so a crowd of near-equal losers lifts a price quickly instead of in
steps of ε. Deterministic: ties go to current holders, then to the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["AuctionResult", "lowest_clearing_rent", "run_auction"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_FIT_TOL_GPUS = 1e-9
_GAP_PASSES = 3


@dataclass(frozen=True)
class AuctionResult:
    """Rents per pool (yuan per GPU-hour above reserve) and the pair each item holds."""

    rent: F64
    held_pair: I64  # per item: index of the pair it holds, −1 if none
    rounds: int


def run_auction(
    starts: I64,
    pool: I64,
    size: F64,
    value: F64,
    cap: F64,
    *,
    eps: float,
    eps_max: float,
    rejections_per_doubling: int = 3,
    waves: int = 8,
    max_rounds: int = 20_000,
) -> AuctionResult:
    """Run the auction over pairs grouped by item.

    ``starts`` has one offset per item plus the end (pairs of item i are
    ``starts[i]:starts[i + 1]``). Every pair must fit its pool alone (size ≤ cap) and
    have positive value; other pairs should be left out by the caller.
    """
    n_items = len(starts) - 1
    n_pools = len(cap)
    count = np.diff(starts)
    rent = np.zeros(n_pools)
    held = np.full(n_items, -1, dtype=np.int64)
    bid = np.zeros(n_items)
    rejected = np.zeros(n_items, dtype=np.int64)
    if n_items == 0 or len(pool) == 0:
        return AuctionResult(rent=rent, held_pair=held, rounds=0)
    has_pairs = count > 0
    best_per_gpu = np.full(n_items, -np.inf)
    best_per_gpu[has_pairs] = np.maximum.reduceat(value / size, starts[:-1][has_pairs])
    order = np.argsort(-best_per_gpu, kind="stable")
    wave_of = np.empty(n_items, dtype=np.int64)
    wave_of[order] = np.minimum(np.arange(n_items) * waves // n_items, waves - 1)
    active = has_pairs & (wave_of == 0)
    wave = 0
    touched = np.zeros(n_pools, dtype=np.bool_)
    rounds = 0
    while rounds < max_rounds:
        bidders = np.flatnonzero(active & (held < 0))
        if len(bidders) == 0:
            if wave + 1 >= waves:
                break
            wave += 1
            active |= has_pairs & (wave_of == wave)
            continue
        rounds += 1
        idx, offs, gid = _gather(starts, count, bidders)
        net = value[idx] - size[idx] * rent[pool[idx]]
        best = np.maximum.reduceat(net, offs)
        hits = np.flatnonzero(net >= best[gid])
        hit_gid = gid[hits]
        first = hits[np.r_[True, hit_gid[1:] != hit_gid[:-1]]]
        net[first] = -np.inf
        second = np.maximum.reduceat(net, offs)
        stays = best > 0
        active[bidders[~stays]] = False
        if not stays.any():
            continue
        b_item = bidders[stays]
        b_pair = idx[first[stays]]
        doublings = np.minimum(rejected[b_item] // rejections_per_doubling, 30)
        step = np.maximum(np.minimum(eps * 2.0**doublings, eps_max), eps)
        b_bid = (
            rent[pool[b_pair]]
            + (best[stays] - np.maximum(second[stays], 0.0)) / size[b_pair]
            + step
        )
        touched[:] = False
        touched[pool[b_pair]] = True
        holders = np.flatnonzero(held >= 0)
        holders = holders[touched[pool[held[holders]]]]
        _resolve(
            np.concatenate([holders, b_item]),
            np.concatenate([held[holders], b_pair]),
            np.concatenate([bid[holders], b_bid]),
            pool,
            size,
            cap,
            rent,
            held,
            bid,
            rejected,
        )
    return AuctionResult(rent=rent, held_pair=held, rounds=rounds)


def lowest_clearing_rent(
    item: I64, pool: I64, size: F64, value: F64, held_pair: I64, rent: F64
) -> F64:
    """The lowest rents, at most ``rent``, at which no item prefers a pool it does not hold.

    An item not on p would pay up to (v_ip − its current net) / a_ip per GPU there; the
    rent of p need only reach the highest such offer. Pairs are indexed as for
    ``held_pair`` (one entry per item, −1: none).
    """
    current = np.zeros(len(held_pair))
    on = held_pair >= 0
    h = held_pair[on]
    current[on] = value[h] - size[h] * rent[pool[h]]
    mine = np.zeros(len(item), dtype=np.bool_)
    mine[h] = True
    # An item of no size (a service city with no demand) takes no GPUs: it offers nothing.
    sized = size > 0
    offer = np.full(len(item), -np.inf)
    bid = ~mine & sized
    offer[bid] = (value[bid] - np.maximum(current[item[bid]], 0.0)) / size[bid]
    low = np.zeros(len(rent))
    np.maximum.at(low, pool, offer)
    return np.minimum(low, rent)


def _gather(starts: I64, count: I64, items: I64) -> tuple[I64, I64, I64]:
    """Pair indices of ``items`` (concatenated), each item's offset in them, item slot."""
    lens = count[items]
    offs = np.zeros(len(items), dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    total = int(offs[-1] + lens[-1])
    idx = np.arange(total, dtype=np.int64) + np.repeat(starts[items] - offs, lens)
    gid = np.repeat(np.arange(len(items), dtype=np.int64), lens)
    return idx, offs, gid


def _resolve(
    c_item: I64,
    c_pair: I64,
    c_bid: F64,
    pool: I64,
    size: F64,
    cap: F64,
    rent: F64,
    held: I64,
    bid: F64,
    rejected: I64,
) -> None:
    """Each pool keeps its highest bids that fit; rents rise where someone was refused."""
    c_pool = pool[c_pair]
    # Holders come first in the input, so a stable sort hands them the ties.
    order = np.lexsort((-c_bid, c_pool))
    c_item, c_pair, c_bid, c_pool = c_item[order], c_pair[order], c_bid[order], c_pool[order]
    c_size = size[c_pair]
    group = np.flatnonzero(np.r_[True, c_pool[1:] != c_pool[:-1]])
    glen = np.diff(np.r_[group, len(c_pool)])
    gid = np.repeat(np.arange(len(group)), glen)
    room = cap[c_pool[group]] + _FIT_TOL_GPUS
    prefix = _fit_prefix(c_size, np.ones(len(c_size), dtype=np.bool_), group, gid, room)
    kept = np.add.reduceat(prefix.astype(np.int64), group)
    fits = prefix.copy()
    # Gap fill: the prefix stops at the first bid that does not fit; smaller, lower bids
    # behind it may still fit the room left. They hold GPUs that would otherwise idle.
    for _ in range(_GAP_PASSES):
        room = room - np.bincount(gid, weights=np.where(fits, c_size, 0.0), minlength=len(group))
        room = np.maximum(room, 0.0)
        more = _fit_prefix(c_size, ~fits & (c_size <= room[gid]), group, gid, room)
        if not more.any():
            break
        fits |= more
        room = cap[c_pool[group]] + _FIT_TOL_GPUS
    out = ~fits
    held[c_item[out]] = -1
    rejected[c_item[out]] += 1
    held[c_item[fits]] = c_pair[fits]
    bid[c_item[fits]] = c_bid[fits]
    refused = np.add.reduceat(out.astype(np.int64), group) > 0
    sel = refused & (kept > 0)
    if not sel.any():
        return
    # The rent rises to the lowest bid of the prefix: whoever was refused must outbid it.
    lowest_kept = group[sel] + kept[sel] - 1
    p = c_pool[lowest_kept]
    rent[p] = np.maximum(rent[p], c_bid[lowest_kept])


def _fit_prefix(
    size: F64, eligible: npt.NDArray[np.bool_], group: I64, gid: I64, room: F64
) -> npt.NDArray[np.bool_]:
    """Per group, the eligible entries (in order) whose running total stays within room."""
    used = np.cumsum(np.where(eligible, size, 0.0))
    before = np.r_[0.0, used][group][gid]
    fits: npt.NDArray[np.bool_] = eligible & (used - before <= room[gid])
    return fits
