"""Roofline formulas, each checked against arithmetic written out beside it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from suanli.domain import Accelerator, LLMModel
from suanli.perf.inference import (
    decode_compute_s,
    decode_memory_s,
    decode_step_s,
    fits,
    kv_bytes_per_token,
    kv_room_bytes,
    max_concurrent,
    min_tp,
    peak_flops,
    prefill_flops,
    prefill_s,
    tp_effective,
    usable_bytes,
    uses_fp8,
    weights_bytes,
    weights_read_bytes,
)

BW_H800 = 3.35e12 * 0.7  # bytes/s reached in decode: 3.35 TB/s · MBU 0.7 = 2.345e12
BF16_H800 = 989e12 * 0.5  # FLOP/s reached: 989 TFLOPS · MFU 0.5 = 4.945e14
FP8_H800 = 1979e12 * 0.5  # 9.895e14


def test_kv_bytes_per_token(llama8b: LLMModel, deepseek_v3: LLMModel) -> None:
    # standard attention: 2 · layers · kv_heads · head_dim · bytes = 2 · 32 · 8 · 128 · 2
    assert kv_bytes_per_token(llama8b) == 131_072
    # MLA: layers · 576 · bytes = 61 · 576 · 2 (not 2 · 128 heads · 128 · 2 per layer)
    assert kv_bytes_per_token(deepseek_v3) == 70_272
    # FP8 KV halves it: 32 · 2048 · 1
    assert kv_bytes_per_token(replace(llama8b, kv_bytes_per_elem=1.0)) == 65_536


def test_weights_bytes(llama8b: LLMModel, deepseek_v3: LLMModel) -> None:
    assert weights_bytes(llama8b) == pytest.approx(16e9)  # 8.0e9 params · 2 bytes
    assert weights_bytes(deepseek_v3) == pytest.approx(671e9)  # every expert, 1 byte each


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (1, 37e9),  # one token touches the active share: 671e9 · 37/671
        (2, 71.9598e9),  # 671e9 · (2a − a²), a = 37/671: 74e9 − 37²/671 e9 = 71.9598e9
        (1000, 671e9),  # (634/671)^1000 ≈ e^-56.7: every expert is read
    ],
)
def test_moe_weights_read_grow_to_all_experts(
    deepseek_v3: LLMModel, batch: int, expected: float
) -> None:
    assert weights_read_bytes(deepseek_v3, batch) == pytest.approx(expected, rel=1e-5)


def test_dense_model_reads_all_weights_every_step(llama8b: LLMModel) -> None:
    assert weights_read_bytes(llama8b, 1) == pytest.approx(16e9)
    assert weights_read_bytes(llama8b, 64) == pytest.approx(16e9)


@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (1, 1.0),  # no all-reduce
        (2, 2 / 1.05),  # 1.9048: one doubling loses 5 %
        (8, 8 / 1.15),  # 6.9565: three doublings
        (16, 16 / 1.20),  # 13.333
    ],
)
def test_tp_effective(tp: int, expected: float) -> None:
    assert tp_effective(tp) == pytest.approx(expected)


def test_usable_and_kv_room(h800: Accelerator, llama8b: LLMModel) -> None:
    assert usable_bytes(h800, 1) == pytest.approx(72e9)  # 80 GB · 0.9
    assert usable_bytes(h800, 8) == pytest.approx(576e9)  # 8 · 72 GB
    assert kv_room_bytes(llama8b, h800, 1) == pytest.approx(56e9)  # 72 − 16 GB


@pytest.mark.parametrize(
    ("mem_gb", "expected_tp"),
    [
        (80.0, 1),  # 72 GB − 16 GB = 56 GB ≥ 16,384 tokens · 131,072 B = 2.15 GB
        # 18 GB card: 16.2 − 16 = 0.2 GB < 2.15 GB at TP1; TP2: 32.4 − 16 = 16.4 GB fits
        (18.0, 2),
        (4.0, 8),  # TP4: 14.4 GB < 16 GB; TP8: 28.8 − 16 = 12.8 GB fits
        (2.0, 16),  # TP8: 14.4 GB < 16; TP16: 28.8 − 16 = 12.8 GB fits
        (1.0, None),  # TP16: 14.4 GB < 16 GB of weights — does not fit
    ],
)
def test_min_tp_llama8b(
    h800: Accelerator, llama8b: LLMModel, mem_gb: float, expected_tp: int | None
) -> None:
    assert min_tp(llama8b, replace(h800, mem_gb=mem_gb)) == expected_tp


@pytest.mark.parametrize(
    ("mem_gb", "expected_tp"),
    [
        (80.0, 16),  # TP8: 576 GB < 671 GB; TP16: 1,152 − 671 = 481 GB (two nodes)
        (96.0, 8),  # H20: TP8 = 691.2 GB − 671 = 20.2 GB ≥ 16,384 · 70,272 B = 1.15 GB
        (141.0, 8),  # H200: TP4 = 507.6 GB < 671; TP8 = 1,015.2 GB
        (24.0, None),  # RTX 4090: TP16 = 345.6 GB < 671 GB
    ],
)
def test_min_tp_deepseek(
    h800: Accelerator, deepseek_v3: LLMModel, mem_gb: float, expected_tp: int | None
) -> None:
    assert min_tp(deepseek_v3, replace(h800, mem_gb=mem_gb)) == expected_tp


def test_fits_requires_min_kv_budget(h800: Accelerator, llama8b: LLMModel) -> None:
    # 17.9 GB card: 16.11 GB usable holds the 16 GB weights but only 0.11 GB of KV
    card = replace(h800, mem_gb=17.9)
    assert kv_room_bytes(llama8b, card, 1) > 0
    assert not fits(llama8b, card, 1)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (2000, 213),  # ⌊56e9 / (131,072 · 2,000)⌋ = ⌊213.6⌋
        (128_000, 3),  # ⌊56e9 / (131,072 · 128,000)⌋ = ⌊3.34⌋
        (500_000, 0),  # one sequence needs 65.5 GB > 56 GB
    ],
)
def test_max_concurrent(h800: Accelerator, llama8b: LLMModel, context: int, expected: int) -> None:
    assert max_concurrent(llama8b, h800, 1, context) == expected


def test_max_concurrent_is_zero_when_weights_do_not_fit(
    h800: Accelerator, deepseek_v3: LLMModel
) -> None:
    assert max_concurrent(deepseek_v3, h800, 8, 1000) == 0  # 576 GB < 671 GB


def test_peak_flops_precision(h800: Accelerator, llama8b: LLMModel, deepseek_v3: LLMModel) -> None:
    assert peak_flops(llama8b, h800) == 989e12  # BF16 weights → BF16 peak
    assert uses_fp8(deepseek_v3, h800)
    assert peak_flops(deepseek_v3, h800) == 1979e12  # FP8 weights on an FP8 card
    a100 = replace(h800, bf16_tflops=312.0, fp8_tflops=None)
    assert not uses_fp8(deepseek_v3, a100)
    assert peak_flops(deepseek_v3, a100) == 312e12  # no FP8 tensor cores: BF16 rate


def test_prefill_flops(llama8b: LLMModel) -> None:
    # matmuls 2 · 8e9 · 1,000 = 1.6e13; causal attention ½ · 4 · 32 layers · 32 heads · 128
    # · 1,000² = 2.62144e11
    assert prefill_flops(llama8b, 1000) == pytest.approx(1.6e13 + 2.62144e11)


@pytest.mark.parametrize(
    ("tp", "expected_s"),
    [
        (1, (1.6e13 + 2.62144e11) / BF16_H800),  # 1.6262e13 / 4.945e14 = 32.886 ms
        (2, (1.6e13 + 2.62144e11) / (BF16_H800 * 2 / 1.05)),  # 17.265 ms
    ],
)
def test_prefill_s(h800: Accelerator, llama8b: LLMModel, tp: int, expected_s: float) -> None:
    assert prefill_s(llama8b, h800, tp, 1000) == pytest.approx(expected_s)


def test_deepseek_prefill_uses_fp8_peak_on_16_cards(
    h800: Accelerator, deepseek_v3: LLMModel
) -> None:
    # 2 · 37e9 · 1,000 = 7.4e13; attention ½ · 4 · 61 · 128 · 128 · 1e6 = 1.9988e12
    flops = 7.4e13 + 0.5 * 4 * 61 * 128 * 128 * 1e6
    assert prefill_s(deepseek_v3, h800, 16, 1000) == pytest.approx(flops / (FP8_H800 * 16 / 1.2))


@pytest.mark.parametrize(
    ("batch", "memory_s", "compute_s"),
    [
        # (16e9 + 1 · 1,000 · 131,072) / 2.345e12 = 6.879 ms; (16e9 + 4·32·32·128·1,000) /
        # 4.945e14 = 33.4 µs
        (1, (16e9 + 131_072e3) / BW_H800, (16e9 + 524_288e3) / BF16_H800),
        # 256 sequences: (16e9 + 33.55e9) / 2.345e12 = 21.13 ms; 256 · 16.52e9 / 4.945e14
        # = 8.55 ms — still bandwidth-bound
        (256, (16e9 + 256 * 131_072e3) / BW_H800, 256 * (16e9 + 524_288e3) / BF16_H800),
    ],
)
def test_decode_step_on_h800(
    h800: Accelerator, llama8b: LLMModel, batch: int, memory_s: float, compute_s: float
) -> None:
    assert decode_memory_s(llama8b, h800, 1, batch, 1000) == pytest.approx(memory_s)
    assert decode_compute_s(llama8b, h800, 1, batch, 1000) == pytest.approx(compute_s)
    assert decode_step_s(llama8b, h800, 1, batch, 1000) == pytest.approx(max(memory_s, compute_s))
    assert memory_s > compute_s


def test_decode_step_never_below_compute(h20: Accelerator, llama8b: LLMModel) -> None:
    # H20 at batch 256: memory (16e9 + 33.55e9) / (4.0e12 · 0.7) = 17.70 ms, but compute
    # 256 · 16.52e9 / (148e12 · 0.5) = 57.16 ms — the step is compute-bound
    memory_s = (16e9 + 256 * 131_072e3) / 2.8e12
    compute_s = 256 * (16e9 + 524_288e3) / 7.4e13
    assert decode_step_s(llama8b, h20, 1, 256, 1000) == pytest.approx(compute_s)
    assert compute_s > memory_s
    assert math.isclose(decode_memory_s(llama8b, h20, 1, 256, 1000), memory_s)
