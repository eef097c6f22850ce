"""The ε-auction: hand-computed rounds, then properties on random small markets.

Units: values in yuan per hour, sizes in GPUs, rents and bids in yuan per GPU-hour. A bid
is rent + (best net − second-best net) / size + ε; a pool keeps the highest bids that fit
(then smaller ones that fit the gap) and its rent rises to the lowest bid of the prefix.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.market.auction import lowest_clearing_rent, run_auction
from suanli.market.duals import dual_value

EPS = 0.1

# (name, cap per pool, items as [(pool, size, value), …], held pool per item, rent, lowest)
CASES = [
    (
        # One 8-GPU pool, A worth 5/GPU, B 2/GPU. Round 1: A bids 0 + 40/8 + 0.1 = 5.1,
        # B bids 2.1; only A fits; rent = 5.1. Round 2: B nets 16 − 8·5.1 < 0 and leaves.
        # Lowest clearing rent: B would pay 16 / 8 = 2.0.
        "scarce pool goes to the higher value",
        [8.0],
        [[(0, 8.0, 40.0)], [(0, 8.0, 16.0)]],
        [0, -1],
        [5.1],
        [2.0],
    ),
    (
        # Room for both: nobody refused, no rent.
        "room for both",
        [16.0],
        [[(0, 8.0, 40.0)], [(0, 8.0, 16.0)]],
        [0, 0],
        [0.0],
        [0.0],
    ),
    (
        # A: pool 0 worth 40, pool 1 worth 32; B: only pool 0, worth 36. Round 1: A bids
        # (40 − 32)/8 + 0.1 = 1.1 on pool 0, B bids 36/8 + 0.1 = 4.6: B keeps pool 0,
        # rent 4.6. Round 2: A nets 40 − 36.8 = 3.2 on 0, 32 on 1: bids on 1, unopposed.
        # Welfare 36 + 32 = 68 (A on 0 alone would give 40). Lowest: A would pay
        # (40 − 32)/8 = 1.0 for pool 0; nobody else wants pool 1.
        "the loser's second choice",
        [8.0, 8.0],
        [[(0, 8.0, 40.0), (1, 8.0, 32.0)], [(0, 8.0, 36.0)]],
        [1, 0],
        [4.6, 0.0],
        [1.0, 0.0],
    ),
    (
        # 10 GPUs; X 8 GPUs at 5/GPU bids 5.1, Y 4 at 4/GPU bids 4.1, Z 2 at 3/GPU bids 3.1.
        # Prefix: X (8); Y would make 12 > 10; gap of 2 takes Z. Rent = 5.1 (X, the prefix's
        # lowest). Y then nets 16 − 4·5.1 < 0 and leaves: X + Z = 46, the optimum.
        # Lowest: Y would pay 16 / 4 = 4.0.
        "a smaller bid fills the gap",
        [10.0],
        [[(0, 8.0, 40.0)], [(0, 4.0, 16.0)], [(0, 2.0, 6.0)]],
        [0, -1, 0],
        [5.1],
        [4.0],
    ),
]


def _arrays(items: list[list[tuple[int, float, float]]]) -> tuple[np.ndarray, ...]:
    item = np.array([i for i, pairs in enumerate(items) for _ in pairs], dtype=np.int64)
    pool = np.array([p for pairs in items for p, _, _ in pairs], dtype=np.int64)
    size = np.array([a for pairs in items for _, a, _ in pairs], dtype=np.float64)
    value = np.array([v for pairs in items for _, _, v in pairs], dtype=np.float64)
    starts = np.r_[0, np.cumsum([len(pairs) for pairs in items])].astype(np.int64)
    return item, pool, size, value, starts


@pytest.mark.parametrize(
    ("cap", "items", "held_pool", "rent", "lowest"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_auction_by_hand(
    cap: list[float],
    items: list[list[tuple[int, float, float]]],
    held_pool: list[int],
    rent: list[float],
    lowest: list[float],
) -> None:
    item, pool, size, value, starts = _arrays(items)
    res = run_auction(starts, pool, size, value, np.array(cap), eps=EPS, eps_max=EPS, waves=1)
    got = [int(pool[h]) if h >= 0 else -1 for h in res.held_pair]
    assert got == held_pool
    assert res.rent == pytest.approx(rent)
    low = lowest_clearing_rent(item, pool, size, value, res.held_pair, res.rent)
    assert low == pytest.approx(lowest)


def test_no_items_no_rounds() -> None:
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0)
    res = run_auction(
        np.zeros(1, dtype=np.int64), empty_i, empty_f, empty_f, np.ones(2), eps=EPS, eps_max=EPS
    )
    assert res.rounds == 0 and list(res.rent) == [0.0, 0.0] and len(res.held_pair) == 0


@st.composite
def markets(
    draw: st.DrawFn, unit: bool = False
) -> tuple[list[float], list[list[tuple[int, float, float]]]]:
    n_pools = draw(st.integers(1, 3))
    cap = [float(draw(st.integers(1, 12))) for _ in range(n_pools)]
    items = []
    for _ in range(draw(st.integers(1, 6))):
        pools = draw(
            st.lists(st.integers(0, n_pools - 1), min_size=1, max_size=n_pools, unique=True)
        )
        size = 1.0 if unit else float(draw(st.integers(1, 8)))
        pairs = [
            (p, size, size * draw(st.integers(1, 40)) / 4.0)
            for p in sorted(pools)
            if size <= cap[p]
        ]
        if pairs:
            items.append(pairs)
    if not items:
        items = [[(0, 1.0, 1.0)]]
        cap[0] = max(cap[0], 1.0)
    return cap, items


def _best_integral(cap: list[float], items: list[list[tuple[int, float, float]]]) -> float:
    best = 0.0
    for choice in itertools.product(*[[None, *pairs] for pairs in items]):
        used = [0.0] * len(cap)
        for c in choice:
            if c is not None:
                used[c[0]] += c[1]
        if all(u <= k for u, k in zip(used, cap, strict=True)):
            best = max(best, sum(c[2] for c in choice if c is not None))
    return best


@settings(max_examples=150, deadline=None)
@given(markets())
def test_auction_is_feasible_and_bounded(
    market: tuple[list[float], list[list[tuple[int, float, float]]]],
) -> None:
    cap, items = market
    item, pool, size, value, starts = _arrays(items)
    caps = np.array(cap)
    res = run_auction(starts, pool, size, value, caps, eps=EPS, eps_max=1.0, waves=2)
    held = res.held_pair[res.held_pair >= 0]
    # Each item holds one of its own pairs, and no pool is over capacity.
    for i, h in enumerate(res.held_pair):
        assert h < 0 or starts[i] <= h < starts[i + 1]
    used = np.bincount(pool[held], weights=size[held], minlength=len(cap))
    assert np.all(used <= caps + 1e-9)
    assert np.all(res.rent >= 0)
    low = lowest_clearing_rent(item, pool, size, value, res.held_pair, res.rent)
    assert np.all((low >= 0) & (low <= res.rent))
    # L(y) at any rents bounds the best integral assignment (and so the auction's) above.
    best = _best_integral(cap, items)
    group = starts[:-1]
    for y in (res.rent, low):
        bound, _ = dual_value(y, item, pool, value / size, size, caps, group)
        assert bound >= best - 1e-9
    assert value[held].sum() <= best + 1e-9


@settings(max_examples=150, deadline=None)
@given(markets(unit=True))
def test_unit_items_end_within_eps_of_the_optimum(
    market: tuple[list[float], list[list[tuple[int, float, float]]]],
) -> None:
    # With one-GPU items and a fixed ε the auction is Bertsekas's: every holder is within ε
    # of its best choice and every pool with rent is full, so it loses at most ε per item.
    cap, items = market
    _, pool, size, value, starts = _arrays(items)
    res = run_auction(starts, pool, size, value, np.array(cap), eps=EPS, eps_max=EPS, waves=1)
    held = res.held_pair[res.held_pair >= 0]
    assert value[held].sum() >= _best_integral(cap, items) - EPS * len(items) - 1e-9


def test_dual_value_by_hand() -> None:
    # Two items on one 8-GPU pool, values 5 and 2 per GPU, 8 GPUs each. At y = 3:
    # L = 8·3 + max(0, 8·(5 − 3)) + max(0, 8·(2 − 3)) = 24 + 16 + 0 = 40 = the optimum.
    # At y = 0: L = 0 + 40 + 16 = 56.
    item = np.array([0, 1])
    pool = np.array([0, 0])
    u = np.array([5.0, 2.0])
    size = np.array([8.0, 8.0])
    cap = np.array([8.0])
    starts = np.array([0, 1])
    assert dual_value(np.array([3.0]), item, pool, u, size, cap, starts)[0] == pytest.approx(40.0)
    value, chosen = dual_value(np.array([0.0]), item, pool, u, size, cap, starts)
    assert value == pytest.approx(56.0) and chosen.tolist() == [True, True]
