"""Concrete nodes of a pool: which node indexes a placement's GPUs land on.

The clearing engine decides GPUs per node (best fit on a free-count histogram); this maps
those counts onto node indexes with the same rule (fullest node that fits, lowest index
first), so the two always agree.
"""

from __future__ import annotations

__all__ = ["PoolNodes"]


class PoolNodes:
    """Free GPUs per node of one pool; nodes can be taken down and brought back."""

    def __init__(self, nodes: int, gpus_per_node: int) -> None:
        self.gpus_per_node = gpus_per_node
        self.free = [gpus_per_node] * nodes
        self.up = [True] * nodes

    @property
    def free_gpus(self) -> int:
        return sum(f for f, up in zip(self.free, self.up, strict=True) if up)

    def free_counts(self) -> tuple[int, ...]:
        return tuple(f for f, up in zip(self.free, self.up, strict=True) if up and f > 0)

    def take(self, counts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """Take ``counts`` GPUs per node; returns (node index, GPUs) pairs. ValueError if short."""
        taken: list[tuple[int, int]] = []
        for n in counts:
            best = -1
            for i, (f, up) in enumerate(zip(self.free, self.up, strict=True)):
                if up and f >= n and (best < 0 or f < self.free[best]):
                    best = i
                    if f == n:
                        break
            if best < 0:
                self.give(tuple(taken))
                raise ValueError(f"no node with {n} free GPUs")
            self.free[best] -= n
            taken.append((best, n))
        return tuple(taken)

    def give(self, taken: tuple[tuple[int, int], ...]) -> None:
        for i, n in taken:
            self.free[i] += n

    def set_up(self, up: bool) -> None:
        self.up = [up] * len(self.up)
