"""Replica sizing for services: the performance model seen from the market."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from suanli.domain import Accelerator, LLMModel
from suanli.perf.capacity import LatencySLO, TokenProfile, replica_capacity

__all__ = ["ReplicaSpec", "replica_spec"]


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """GPUs per replica, requests/s it serves within TPOT, predicted TTFT (ms)."""

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
    return ReplicaSpec(
        gpus=cap.gpus, rps=cap.requests_per_s, ttft_ms=cap.ttft_ms, reason=cap.reason
    )
