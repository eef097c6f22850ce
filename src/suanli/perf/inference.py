"""Roofline formulas for LLM inference on one tensor-parallel replica.

Pure arithmetic on floats: no I/O, no object graphs, cheap enough for the clearing
engine's hot path. Units: bytes, seconds, FLOP; ``mem_gb`` is 10⁹ bytes, ``mem_bw_tbps``
10¹² bytes/s, TFLOPS 10¹² FLOP/s. The efficiency factors come from
:mod:`suanli.perf.efficiency`.

The model, for a replica of ``tp`` cards (tensor parallel, weights split evenly)::

    kv_bytes_per_token = layers · kv_elems_per_token_per_layer · kv_bytes_per_elem
    weights_bytes      = total_params · weight_bytes_per_param
    usable_bytes(tp)   = tp · mem_gb · 10⁹ · (1 − MEMORY_RESERVE_FRACTION)
    tp_eff(tp)         = tp / (1 + TP_COMM_OVERHEAD_PER_DOUBLING · log2 tp)

    prefill_flops(P)   = 2 · active_params · P  +  2 · layers · heads · head_dim · P²
    prefill_s(P)       = prefill_flops(P) / (tp_eff · peak · MFU_PREFILL)

    decode step for a batch of B sequences with mean context C tokens:
      memory_s  = (weights_read(B) + B · C · kv_bytes_per_token) / (tp_eff · bw · MBU_DECODE)
      compute_s = (2 · active_params · B + 4 · layers · heads · head_dim · C · B)
                  / (tp_eff · peak · MFU_PREFILL)
      step_s    = max(memory_s, compute_s)

    max_concurrent(L)  = ⌊(usable_bytes − weights_bytes) / (kv_bytes_per_token · L)⌋

``peak`` is the FP8 peak when the weights are stored in 8 bits or fewer and the card has
FP8, else the dense BF16 peak. The attention terms count QKᵀ and AV (2 FLOP per
multiply-add); a causal prompt attends to half of itself on average.

MoE weights read per decode step: each token touches a share ``a = active / total`` of the
weights; with uniform routing B tokens touch ``1 − (1 − a)^B`` of them, so a step reads
``weights_bytes · (1 − (1 − a)^B)`` — the active weights at B = 1, all experts at large B
(the weight traffic is then amortized across the batch). Dense models (a = 1) read all
weights every step.
"""

from __future__ import annotations

import math

from suanli.domain import Accelerator, LLMModel
from suanli.perf.efficiency import (
    MBU_DECODE,
    MEMORY_RESERVE_FRACTION,
    MFU_PREFILL,
    MIN_KV_TOKENS,
    TP_COMM_OVERHEAD_PER_DOUBLING,
)

__all__ = [
    "TP_DEGREES",
    "decode_compute_s",
    "decode_memory_s",
    "decode_step_s",
    "fits",
    "kv_bytes_per_token",
    "kv_room_bytes",
    "max_concurrent",
    "min_tp",
    "peak_flops",
    "prefill_flops",
    "prefill_s",
    "tp_effective",
    "usable_bytes",
    "uses_fp8",
    "weights_bytes",
    "weights_read_bytes",
]

TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8, 16)
"""Tensor-parallel degrees considered; 16 spans two 8-GPU nodes (only for models that
do not fit on 8 cards, e.g. DeepSeek-V3 on 80 GB cards)."""

_GB = 1e9
_TB = 1e12
_TFLOP = 1e12


def kv_bytes_per_token(model: LLMModel) -> float:
    """Bytes of KV cache one token occupies across all layers."""
    return model.layers * model.kv_elems_per_token_per_layer * model.kv_bytes_per_elem


def weights_bytes(model: LLMModel) -> float:
    """Bytes of all weights (every expert of a MoE model)."""
    return model.total_params_b * 1e9 * model.weight_bytes_per_param


def weights_read_bytes(model: LLMModel, batch: float) -> float:
    """Weight bytes one decode step of ``batch`` sequences reads (see module docstring)."""
    share = model.active_params_b / model.total_params_b
    if share >= 1.0:
        return weights_bytes(model)
    return weights_bytes(model) * (1.0 - math.pow(1.0 - share, batch))


def usable_bytes(gpu: Accelerator, tp: int) -> float:
    """Memory of ``tp`` cards available to weights and KV cache."""
    return tp * gpu.mem_gb * _GB * (1.0 - MEMORY_RESERVE_FRACTION)


def kv_room_bytes(model: LLMModel, gpu: Accelerator, tp: int) -> float:
    """Memory left for KV cache once the weights are loaded (negative if they do not fit)."""
    return usable_bytes(gpu, tp) - weights_bytes(model)


def fits(model: LLMModel, gpu: Accelerator, tp: int) -> bool:
    """Whether ``tp`` cards hold the weights plus ``MIN_KV_TOKENS`` tokens of KV cache."""
    return kv_room_bytes(model, gpu, tp) >= MIN_KV_TOKENS * kv_bytes_per_token(model)


def min_tp(model: LLMModel, gpu: Accelerator) -> int | None:
    """The smallest degree in :data:`TP_DEGREES` that :func:`fits`; None if even 16 does not."""
    for tp in TP_DEGREES:
        if fits(model, gpu, tp):
            return tp
    return None


def max_concurrent(model: LLMModel, gpu: Accelerator, tp: int, context_tokens: float) -> int:
    """Sequences of ``context_tokens`` (prompt + output) whose KV fits beside the weights."""
    room = kv_room_bytes(model, gpu, tp)
    if room <= 0:
        return 0
    return math.floor(room / (kv_bytes_per_token(model) * context_tokens))


def uses_fp8(model: LLMModel, gpu: Accelerator) -> bool:
    """True when the weights are 8-bit (or smaller) and the card has FP8 tensor cores."""
    return model.weight_bytes_per_param <= 1.0 and gpu.fp8_tflops is not None


def peak_flops(model: LLMModel, gpu: Accelerator) -> float:
    """Dense peak FLOP/s of one card for this model's weight precision."""
    if uses_fp8(model, gpu) and gpu.fp8_tflops is not None:
        return gpu.fp8_tflops * _TFLOP
    return gpu.bf16_tflops * _TFLOP


def tp_effective(tp: int) -> float:
    """Effective parallel speed-up of ``tp`` cards after all-reduce overhead (≥ 1, monotone)."""
    return tp / (1.0 + TP_COMM_OVERHEAD_PER_DOUBLING * math.log2(tp))


def _attn_flops_per_pair(model: LLMModel) -> float:
    # QKᵀ and AV for one (query token, cached token) pair over all heads and layers.
    return 4.0 * model.layers * model.heads * model.head_dim


def prefill_flops(model: LLMModel, prompt_tokens: float) -> float:
    """FLOPs of one prompt's prefill: dense matmuls plus causal attention."""
    matmul = 2.0 * model.active_params_b * 1e9 * prompt_tokens
    attention = 0.5 * _attn_flops_per_pair(model) * prompt_tokens**2
    return matmul + attention


def prefill_s(model: LLMModel, gpu: Accelerator, tp: int, prompt_tokens: float) -> float:
    """Seconds of compute-bound prefill for one prompt on a ``tp``-card replica."""
    rate = tp_effective(tp) * peak_flops(model, gpu) * MFU_PREFILL
    return prefill_flops(model, prompt_tokens) / rate


def decode_memory_s(
    model: LLMModel, gpu: Accelerator, tp: int, batch: float, context_tokens: float
) -> float:
    """Seconds to stream one decode step's weights and KV cache from HBM."""
    kv_read = batch * context_tokens * kv_bytes_per_token(model)
    bandwidth = tp_effective(tp) * gpu.mem_bw_tbps * _TB * MBU_DECODE
    return (weights_read_bytes(model, batch) + kv_read) / bandwidth


def decode_compute_s(
    model: LLMModel, gpu: Accelerator, tp: int, batch: float, context_tokens: float
) -> float:
    """Seconds of arithmetic in one decode step: the step can never be faster than this."""
    flops = batch * (
        2.0 * model.active_params_b * 1e9 + _attn_flops_per_pair(model) * context_tokens
    )
    return flops / (tp_effective(tp) * peak_flops(model, gpu) * MFU_PREFILL)


def decode_step_s(
    model: LLMModel, gpu: Accelerator, tp: int, batch: float, context_tokens: float
) -> float:
    """Seconds per decode step (one token for each of ``batch`` sequences): the roofline max."""
    return max(
        decode_memory_s(model, gpu, tp, batch, context_tokens),
        decode_compute_s(model, gpu, tp, batch, context_tokens),
    )
