"""Node topology of a pool: which nodes a gang or a replica lands on.

A pool keeps a histogram ``hist[k]`` = number of nodes with exactly k free GPUs. A gang of
n ≤ GPUs-per-node goes on one node, best fit (the fullest node that still holds it), so
whole nodes stay free for big gangs. A gang of n > GPUs-per-node takes n // gpn whole free
nodes plus a best-fit node for the remainder (the fabric filter has already required a
high-bandwidth fabric for it).
"""

from __future__ import annotations

__all__ = ["free_histogram", "take_gang"]


def free_histogram(node_free: list[int], gpus_per_node: int) -> list[int]:
    """``hist[k]`` = nodes with k free GPUs (k = 0..gpus_per_node)."""
    hist = [0] * (gpus_per_node + 1)
    for k in node_free:
        hist[min(max(k, 0), gpus_per_node)] += 1
    return hist


def take_gang(hist: list[int], n: int) -> tuple[int, ...] | None:
    """Take ``n`` GPUs from ``hist`` in place; the GPUs used per node, or None (no change)."""
    gpn = len(hist) - 1
    whole, rest = divmod(n, gpn) if n > gpn else (0, n)
    if hist[gpn] < whole:
        return None
    hist[gpn] -= whole
    hist[0] += whole
    taken = [gpn] * whole
    if rest:
        k = _best_fit(hist, rest)
        if k is None:
            hist[gpn] += whole
            hist[0] -= whole
            return None
        hist[k] -= 1
        hist[k - rest] += 1
        taken.append(rest)
    return tuple(taken)


def _best_fit(hist: list[int], n: int) -> int | None:
    for k in range(n, len(hist)):
        if hist[k]:
            return k
    return None
