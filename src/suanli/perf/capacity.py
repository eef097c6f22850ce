"""What one inference replica serves under TTFT/TPOT SLOs: the clearing engine's entry point.

A replica of ``tp`` cards serves a token profile (mean prompt tokens P, mean output tokens
O) with continuous batching; prefills share the replica with decode steps (time-share).
With B sequences in flight, every decode step emits one token for each of them, and each
sequence leaves after O steps, so B / O new prompts must be prefilled per step::

    tpot(B)      = step_s(B, context = P + O/2) + (B / O) · prefill_s(P)
    requests/s   = B / (O · tpot(B))        (= 1 / (prefill_s + O · step_s / B))
    output tok/s = B / tpot(B),  input tok/s = requests/s · P

B is the largest batch with ``tpot(B) ≤ TPOT`` and ``B ≤ max_concurrent(P + O)``
(KV room for every sequence at full length). TTFT is met when ``prefill_s(P) ≤
TTFT_PREFILL_FRACTION · TTFT``; the rest of the budget is kept for queueing. An
infeasible SLO gives requests/s = 0 with the reason, never an exception.

``binding`` names what limits the replica: ``does_not_fit`` (weights), ``memory`` (KV
room caps the batch), ``tpot`` (the decode step's HBM traffic caps the batch), ``compute``
(the step's arithmetic, or prefills sharing the replica, cap the batch), ``ttft``
(prefill too slow). :func:`replica_capacity` is memoized by value: its arguments are
frozen, hashable dataclasses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from suanli.domain import Accelerator, LLMModel
from suanli.errors import InvalidInput
from suanli.perf.efficiency import GPUS_PER_NODE, MIN_KV_TOKENS, TTFT_PREFILL_FRACTION
from suanli.perf.inference import (
    TP_DEGREES,
    decode_compute_s,
    decode_memory_s,
    decode_step_s,
    fits,
    kv_bytes_per_token,
    kv_room_bytes,
    max_concurrent,
    prefill_s,
    usable_bytes,
    weights_bytes,
)

__all__ = [
    "Binding",
    "DecodeThroughput",
    "LatencySLO",
    "ReplicaCapacity",
    "TokenProfile",
    "decode_throughput",
    "prefill_tokens_per_s",
    "replica_capacity",
]


class Binding(StrEnum):
    """What limits a replica's capacity."""

    MEMORY = "memory"
    TPOT = "tpot"
    TTFT = "ttft"
    COMPUTE = "compute"
    DOES_NOT_FIT = "does_not_fit"


def _require_positive(name: str, value: float, *, allow_inf: bool = False) -> None:
    ok = value > 0 and (math.isfinite(value) or (allow_inf and value == math.inf))
    if not ok:
        raise InvalidInput(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class TokenProfile:
    """Mean tokens per request: prompt (prefilled) and output (decoded)."""

    prompt_tokens: float
    output_tokens: float

    def __post_init__(self) -> None:
        _require_positive("prompt_tokens", self.prompt_tokens)
        _require_positive("output_tokens", self.output_tokens)

    @property
    def context_tokens(self) -> float:
        """Tokens of KV a sequence holds when it finishes."""
        return self.prompt_tokens + self.output_tokens

    @property
    def mean_decode_context(self) -> float:
        """Mean KV length read per decode step over a sequence's life."""
        return self.prompt_tokens + self.output_tokens / 2.0


@dataclass(frozen=True, slots=True)
class LatencySLO:
    """Time to first token and time per output token, in ms (``inf`` = no limit)."""

    ttft_ms: float
    tpot_ms: float

    def __post_init__(self) -> None:
        _require_positive("ttft_ms", self.ttft_ms, allow_inf=True)
        _require_positive("tpot_ms", self.tpot_ms, allow_inf=True)


@dataclass(frozen=True, slots=True)
class ReplicaCapacity:
    """Steady-state capacity of one replica; ``requests_per_s == 0`` when infeasible."""

    model: str
    gpu: str
    tp: int
    gpus: int
    requests_per_s: float
    output_tokens_per_s: float
    input_tokens_per_s: float
    batch: int
    ttft_ms: float
    tpot_ms: float
    binding: Binding
    reason: str

    @property
    def feasible(self) -> bool:
        return self.requests_per_s > 0

    @property
    def requests_per_s_per_gpu(self) -> float:
        return self.requests_per_s / self.gpus


@dataclass(frozen=True, slots=True)
class DecodeThroughput:
    """A decode-only operating point (prefill elsewhere, as in disaggregated serving)."""

    batch: int
    step_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.step_s if self.batch else 0.0


def _largest_batch(cost: Callable[[int], float], limit: float, n_max: int) -> int:
    """Largest B in [1, n_max] with cost(B) ≤ limit, for cost non-decreasing; 0 if none."""
    if n_max < 1 or cost(1) > limit:
        return 0
    lo, hi = 1, n_max
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _limit_ms(ms: float) -> str:
    return "no limit" if ms == math.inf else f"{ms:,.0f} ms"


@lru_cache(maxsize=65_536)
def replica_capacity(
    model: LLMModel,
    gpu: Accelerator,
    profile: TokenProfile,
    slo: LatencySLO,
    tp: int | None = None,
) -> ReplicaCapacity:
    """Capacity of one replica of ``model`` on ``gpu`` for ``profile`` under ``slo``.

    With ``tp`` given, that degree is used (``does_not_fit`` if it cannot hold the model).
    With ``tp=None``, the smallest fitting degree of one node (≤ 8 cards; 16 only when 8
    does not fit) that meets the SLOs is used; if none meets them, the smallest fitting
    degree's result says why.
    """
    if tp is not None:
        if tp < 1:
            raise InvalidInput(f"tensor-parallel degree must be ≥ 1, got {tp}")
        return _capacity_at(model, gpu, profile, slo, tp)
    fitting = [d for d in TP_DEGREES if fits(model, gpu, d)]
    candidates = [d for d in fitting if d <= GPUS_PER_NODE] or fitting
    if not candidates:
        return _capacity_at(model, gpu, profile, slo, TP_DEGREES[-1])
    first = _capacity_at(model, gpu, profile, slo, candidates[0])
    if first.feasible:
        return first
    for d in candidates[1:]:
        r = _capacity_at(model, gpu, profile, slo, d)
        if r.feasible:
            return r
    return first


def _capacity_at(
    model: LLMModel, gpu: Accelerator, profile: TokenProfile, slo: LatencySLO, tp: int
) -> ReplicaCapacity:
    def result(
        binding: Binding,
        reason: str,
        batch: int = 0,
        ttft_s: float = 0.0,
        tpot_s: float = 0.0,
    ) -> ReplicaCapacity:
        rps = batch / (profile.output_tokens * tpot_s) if batch else 0.0
        return ReplicaCapacity(
            model=model.name,
            gpu=gpu.name,
            tp=tp,
            gpus=tp,
            requests_per_s=rps,
            output_tokens_per_s=rps * profile.output_tokens,
            input_tokens_per_s=rps * profile.prompt_tokens,
            batch=batch,
            ttft_ms=ttft_s * 1e3,
            tpot_ms=tpot_s * 1e3,
            binding=binding,
            reason=reason,
        )

    cards = f"{tp} × {gpu.name}"
    if not fits(model, gpu, tp):
        need = weights_bytes(model) + MIN_KV_TOKENS * kv_bytes_per_token(model)
        return result(
            Binding.DOES_NOT_FIT,
            f"does not fit: weights {_gb(weights_bytes(model))} + KV for "
            f"{MIN_KV_TOKENS:,} tokens need {_gb(need)}; {cards} offer "
            f"{_gb(usable_bytes(gpu, tp))} usable",
        )

    n_max = max_concurrent(model, gpu, tp, profile.context_tokens)
    if n_max < 1:
        per_seq = kv_bytes_per_token(model) * profile.context_tokens
        return result(
            Binding.MEMORY,
            f"KV for one {profile.context_tokens:,.0f}-token sequence needs {_gb(per_seq)}; "
            f"{cards} have {_gb(kv_room_bytes(model, gpu, tp))} left after weights",
        )

    pre_s = prefill_s(model, gpu, tp, profile.prompt_tokens)
    ttft_budget_s = TTFT_PREFILL_FRACTION * slo.ttft_ms / 1e3
    if pre_s > ttft_budget_s:
        return result(
            Binding.TTFT,
            f"TTFT infeasible: prefill of {profile.prompt_tokens:,.0f} tokens takes "
            f"{_ms(pre_s)} on {cards} > {TTFT_PREFILL_FRACTION:.0%} of TTFT "
            f"{_limit_ms(slo.ttft_ms)} (the rest is kept for queueing)",
            ttft_s=pre_s,
        )

    ctx = profile.mean_decode_context
    out = profile.output_tokens

    def tpot_s(b: int) -> float:
        return decode_step_s(model, gpu, tp, b, ctx) + b * pre_s / out

    def why(b: int) -> tuple[Binding, str]:
        memory = decode_memory_s(model, gpu, tp, b, ctx)
        compute = decode_compute_s(model, gpu, tp, b, ctx)
        prefill_share = b * pre_s / out
        if prefill_share > max(memory, compute):
            return Binding.COMPUTE, "prefill time-share-bound"
        if compute > memory:
            return Binding.COMPUTE, "decode compute-bound"
        return Binding.TPOT, "decode bandwidth-bound"

    tpot_limit_s = slo.tpot_ms / 1e3
    batch = _largest_batch(tpot_s, tpot_limit_s, n_max)
    if batch == 0:
        binding, kind = why(1)
        return result(
            binding,
            f"TPOT infeasible: even batch 1 takes {_ms(tpot_s(1))} per token "
            f"> {_limit_ms(slo.tpot_ms)} ({kind})",
            ttft_s=pre_s,
        )

    t = tpot_s(batch)
    at_tpot = f"batch {batch:,} at TPOT {_ms(t)} ≤ {_limit_ms(slo.tpot_ms)}"
    if batch == n_max:
        binding = Binding.MEMORY
        head = (
            f"KV memory-bound: {batch:,} sequences of {profile.context_tokens:,.0f} tokens "
            f"fill {_gb(kv_room_bytes(model, gpu, tp))}; TPOT {_ms(t)} ≤ "
            f"{_limit_ms(slo.tpot_ms)}"
        )
    else:
        binding, kind = why(batch + 1)
        head = f"{kind}: {at_tpot}"
    share = batch * pre_s / out / t
    tail = f"; prefill takes {share:.0%} of replica time" if share >= 0.5 else ""
    return result(binding, head + tail, batch=batch, ttft_s=pre_s, tpot_s=t)


def decode_throughput(
    model: LLMModel, gpu: Accelerator, tp: int, profile: TokenProfile, tpot_ms: float
) -> DecodeThroughput:
    """Decode-only operating point: the largest batch whose step fits ``tpot_ms`` and memory.

    Prefill is assumed to run on other cards (prefill/decode disaggregation), so no
    time-share term. ``batch`` is 0 when nothing fits.
    """
    ctx = profile.mean_decode_context
    n_max = max_concurrent(model, gpu, tp, profile.context_tokens)

    def step(b: int) -> float:
        return decode_step_s(model, gpu, tp, b, ctx)

    batch = _largest_batch(step, tpot_ms / 1e3, n_max)
    return DecodeThroughput(batch=batch, step_s=step(batch) if batch else math.inf)


def prefill_tokens_per_s(model: LLMModel, gpu: Accelerator, tp: int, prompt_tokens: float) -> float:
    """Prompt tokens per second a ``tp``-card replica prefills back to back (compute-bound)."""
    return prompt_tokens / prefill_s(model, gpu, tp, prompt_tokens)
