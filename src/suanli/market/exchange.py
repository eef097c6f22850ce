"""The exchange policy: prices from the LP dual, then integral placement guided by them.

Steps (see ``duals`` for the relaxation): filter and rank candidates (``prepare``), find
capacity prices, walk all candidate pairs by surplus net of price, then a fill pass at
reserve for what the prices held back; uniform prices = reserve + scarcity rent
(``settle``).
"""

from __future__ import annotations

import numpy as np

from suanli.market.assign import Walk
from suanli.market.context import MarketContext
from suanli.market.decision import Decision
from suanli.market.duals import discover_prices
from suanli.market.policies import prepare
from suanli.market.settle import settle
from suanli.market.snapshot import MarketSnapshot

__all__ = ["ExchangePolicy"]


class ExchangePolicy:
    """The market: LP-dual prices, then a surplus-ordered walk and a fill pass."""

    name = "exchange"

    def __init__(self, ctx: MarketContext) -> None:
        self.ctx = ctx

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        walk = Walk(snapshot, prep.pools, prep.jobs, prep.services, prep.book)
        item = np.concatenate([prep.jobs.item, prep.services.item + len(snapshot.jobs)])
        size = np.concatenate([prep.jobs.n[prep.jobs.item].astype(np.float64), prep.services.size])
        u, pool = walk.pair_keys()
        scale = float(np.mean(prep.pools.reserve)) if len(prep.pools.reserve) else 1.0
        dual = discover_prices(
            item,
            pool,
            u,
            size,
            prep.pools.free.astype(np.float64),
            iterations=snapshot.rules.price_iterations,
            scale=scale,
        )
        reduced = u - dual.y[pool]
        main = np.flatnonzero(reduced >= 0)
        walk.run(main[np.argsort(-reduced[main], kind="stable")], dual.y.tolist())
        # Fill: what the price signal held back, by surplus at reserve, where room is left.
        rest = np.flatnonzero(reduced < 0)
        walk.run(rest[np.argsort(-u[rest], kind="stable")])
        return settle(
            self.name,
            snapshot,
            prep.pools,
            walk,
            dual.y.tolist(),
            upper_bound=dual.bound,
            notes=(f"price discovery: {dual.iterations} iterations",),
        )
