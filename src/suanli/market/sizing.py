"""Replica sizing for services: the performance model seen from the market.

The performance model admits a replica when its prefill fits in TTFT_PREFILL_FRACTION of
the TTFT SLO, keeping the rest as the allowance for queueing behind other prefills and
decode steps. The server-side TTFT the market uses is therefore prefill plus that
allowance (prefill / fraction); the network RTT must fit on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from suanli.domain import Accelerator, LLMModel
from suanli.perf.capacity import LatencySLO, TokenProfile, replica_capacity
from suanli.perf.efficiency import TTFT_PREFILL_FRACTION

__all__ = ["ReplicaSpec", "replica_spec"]


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """GPUs per replica, requests/s it serves within TPOT, server-side TTFT (ms)."""

    gpus: int
    rps: float
    ttft_ms: float
    reason: str


@lru_cache(maxsize=65_536)
def replica_spec(
    model: LLMModel,
    gpu: Accelerator,
    prompt_tokens: float,
    output_tokens: float,
    ttft_ms: float,
    tpot_ms: float,
) -> ReplicaSpec:
    """One replica of ``model`` on ``gpu``; ``rps == 0`` when it cannot fit or meet the SLO."""
    cap = replica_capacity(
        model, gpu, TokenProfile(prompt_tokens, output_tokens), LatencySLO(ttft_ms, tpot_ms)
    )
    server_ttft_ms = cap.ttft_ms / TTFT_PREFILL_FRACTION
    return ReplicaSpec(
        gpus=cap.gpus, rps=cap.requests_per_s, ttft_ms=server_ttft_ms, reason=cap.reason
    )
