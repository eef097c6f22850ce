"""Concrete nodes of a pool: which node indexes a placement's GPUs land on.

The clearing engine decides GPUs per node (best fit on a free-count histogram); this maps
those counts onto node indexes with the same rule (fullest node that fits, lowest index
first), so the two always agree.
"""

from __future__ import annotations

from itertools import compress

__all__ = ["PoolNodes"]


class PoolNodes:
    """Free GPUs per node of one pool; nodes can be taken down and brought back."""

    def __init__(self, nodes: int, gpus_per_node: int) -> None:
        self.gpus_per_node = gpus_per_node
        self.free = [gpus_per_node] * nodes
        self.up = [True] * nodes

    @property
    def free_gpus(self) -> int:
        return sum(compress(self.free, self.up))

    def free_counts(self) -> tuple[int, ...]:
        return tuple(f for f in compress(self.free, self.up) if f > 0)

    def take(self, counts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """Take ``counts`` GPUs per node; returns (node index, GPUs) pairs. ValueError if short."""
        taken: list[tuple[int, int]] = []
        for n in counts:
            best = self._best_fit(n)
            if best < 0:
                self.give(tuple(taken))
                raise ValueError(f"no node with {n} free GPUs")
            self.free[best] -= n
            taken.append((best, n))
        return tuple(taken)

    def _best_fit(self, n: int) -> int:
        """The up node with the fewest free GPUs ≥ ``n``, lowest index first; −1 if none."""
        free, up = self.free, self.up
        # Hot path (every placement of every round): look for free == n, n + 1, … with
        # list.index, which scans in C; the first hit is the best fit.
        for k in range(n, self.gpus_per_node + 1):
            start = 0
            while True:
                try:
                    i = free.index(k, start)
                except ValueError:
                    break
                if up[i]:
                    return i
                start = i + 1
        # Counts above gpus_per_node (never made here) fall back to a plain scan.
        best = -1
        for i, (f, u) in enumerate(zip(free, up, strict=True)):
            if u and f >= n and (best < 0 or f < free[best]):
                best = i
        return best

    def give(self, taken: tuple[tuple[int, int], ...]) -> None:
        for i, n in taken:
            self.free[i] += n

    def set_up(self, up: bool) -> None:
        self.up = [up] * len(self.up)
