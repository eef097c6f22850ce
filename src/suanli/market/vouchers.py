"""Voucher budgets during one round: reserve before placing, so no budget is ever exceeded.

A placement that leans on a voucher reserves the most the program could pay for it (the
coverage share of the most the buyer could be charged); the actual draw, known once prices
are set, is never more than the reservation. Budgets and per-buyer caps are therefore
respected even when many placements of one buyer clear in the same round.
"""

from __future__ import annotations

import math
from collections import defaultdict

from suanli.market.snapshot import VoucherProgram

__all__ = ["VoucherBook"]


class VoucherBook:
    """Remaining budget and per-buyer headroom of each active program, in fen."""

    def __init__(self, programs: list[VoucherProgram]) -> None:
        self.programs = programs
        self._left_fen = [math.floor((p.budget_cny - p.spent_cny) * 100) for p in programs]
        self._buyer_left_fen: list[dict[str, int]] = [defaultdict(int) for _ in programs]
        self._reserved: dict[tuple[int, str], int] = {}

    def _buyer_left(self, v: int, buyer: str) -> int:
        prog = self.programs[v]
        if prog.per_buyer_cap_cny is None:
            return self._left_fen[v]
        spent = prog.spent_by_buyer_cny.get(buyer, 0.0)
        return math.floor((prog.per_buyer_cap_cny - spent) * 100) - self._buyer_left_fen[v][buyer]

    def reserve(self, v: int, buyer: str, key: str, amount_fen: int) -> bool:
        """Hold ``amount_fen`` of program ``v`` for ``buyer``'s placement ``key``.

        False (and nothing held) if the budget or the buyer's cap is short.
        """
        if amount_fen > self._left_fen[v] or amount_fen > self._buyer_left(v, buyer):
            return False
        self._left_fen[v] -= amount_fen
        self._buyer_left_fen[v][buyer] += amount_fen
        self._reserved[(v, key)] = amount_fen
        return True

    def reserved_fen(self, v: int, key: str) -> int:
        return self._reserved.get((v, key), 0)
