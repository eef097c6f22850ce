"""Replica capacity under SLOs: operating points, bindings, reasons, infeasible SLOs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from suanli.domain import Accelerator, LLMModel
from suanli.errors import InvalidInput
from suanli.perf.capacity import (
    Binding,
    LatencySLO,
    TokenProfile,
    decode_throughput,
    prefill_tokens_per_s,
    replica_capacity,
)

INF = math.inf
NO_SLO = LatencySLO(INF, INF)
BW_H800 = 3.35e12 * 0.7  # 2.345e12 B/s in decode
BF16_H800 = 989e12 * 0.5  # 4.945e14 FLOP/s in prefill
KV_8B = 131_072  # bytes per token, Llama-3.1-8B BF16


def prefill_8b_s(prompt: float, rate: float = BF16_H800) -> float:
    # 2 · 8e9 · P + ½ · 4 · 32 · 32 · 128 · P²
    return (2 * 8e9 * prompt + 0.5 * 524_288 * prompt**2) / rate


def test_memory_bound_offline(h800: Accelerator, llama8b: LLMModel) -> None:
    # 1,000/1,000 tokens, no SLO: batch = ⌊56e9 / (131,072 · 2,000)⌋ = 213 (KV full).
    cap = replica_capacity(llama8b, h800, TokenProfile(1000, 1000), NO_SLO)
    pre = prefill_8b_s(1000)  # 32.886 ms
    step = (16e9 + 213 * 1500 * KV_8B) / BW_H800  # mean context 1,500: 24.681 ms
    tpot = step + 213 * pre / 1000  # + 213 prefills per 1,000 steps: 31.686 ms
    assert (cap.tp, cap.gpus, cap.batch) == (1, 1, 213)
    assert cap.binding is Binding.MEMORY
    assert cap.tpot_ms == pytest.approx(tpot * 1e3)
    assert cap.ttft_ms == pytest.approx(pre * 1e3)
    assert cap.requests_per_s == pytest.approx(213 / (1000 * tpot))  # 6.722 req/s
    assert cap.output_tokens_per_s == pytest.approx(213 / tpot)  # 6,722 tok/s
    assert cap.input_tokens_per_s == pytest.approx(cap.requests_per_s * 1000)
    assert cap.reason.startswith("KV memory-bound: 213 sequences of 2,000 tokens")


def test_tpot_bound_batch(h800: Accelerator, llama8b: LLMModel) -> None:
    # TPOT 20 ms: 16e9 / 2.345e12 = 6.823 ms + B · (1,500 · 131,072 / 2.345e12 = 83.84 µs
    # + 32.886 ms / 1,000 = 32.89 µs) ≤ 20 ms → B ≤ 112.9 → 112
    cap = replica_capacity(llama8b, h800, TokenProfile(1000, 1000), LatencySLO(2000, 20))
    assert cap.batch == 112
    assert cap.binding is Binding.TPOT
    assert cap.tpot_ms <= 20
    assert cap.reason.startswith("decode bandwidth-bound: batch 112 at TPOT")
    tpot = (16e9 + 112 * 1500 * KV_8B) / BW_H800 + 112 * prefill_8b_s(1000) / 1000
    assert cap.requests_per_s == pytest.approx(112 / (1000 * tpot))


def test_compute_bound_batch(h20: Accelerator, llama8b: LLMModel) -> None:
    # H20, 100/1,000 tokens, TPOT 50 ms. Per sequence: compute (16e9 + 524,288 · 600) /
    # (148e12 · 0.5) = 220.47 µs, prefill share 21.66 ms / 1,000 = 21.66 µs; memory only
    # 5.71 ms + 28.09 µs · B. Compute wins past B ≈ 30, so 242.13 µs · B ≤ 50 ms → B = 206
    # (KV room allows ⌊70.4e9 / (131,072 · 1,100)⌋ = 488).
    cap = replica_capacity(llama8b, h20, TokenProfile(100, 1000), LatencySLO(2000, 50))
    assert cap.batch == 206
    assert cap.binding is Binding.COMPUTE
    assert cap.reason.startswith("decode compute-bound: batch 206")


def test_prefill_time_share_bound(h800: Accelerator, llama8b: LLMModel) -> None:
    # 2,000/50 tokens, TPOT 100 ms: prefill 66.83 ms, shared over 50 steps = 1.3367 ms per
    # sequence per step; memory 6.823 ms + 0.11318 ms · B → B ≤ 93.18 / 1.4499 = 64.3 → 64
    cap = replica_capacity(llama8b, h800, TokenProfile(2000, 50), LatencySLO(2000, 100))
    assert cap.batch == 64
    assert cap.binding is Binding.COMPUTE
    assert cap.reason.startswith("prefill time-share-bound: batch 64")
    assert "prefill takes 8" in cap.reason  # 64 · 1.3367 / 99.8 ms = 86 % of replica time


def test_ttft_infeasible(h800: Accelerator, llama8b: LLMModel) -> None:
    # prefill of 8,000 tokens: (1.28e14 + 1.678e13) / 4.945e14 = 292.8 ms > ½ · 200 ms
    cap = replica_capacity(llama8b, h800, TokenProfile(8000, 100), LatencySLO(200, 100), tp=1)
    assert cap.requests_per_s == 0
    assert not cap.feasible
    assert cap.binding is Binding.TTFT
    assert cap.ttft_ms == pytest.approx(prefill_8b_s(8000) * 1e3)
    assert "TTFT infeasible" in cap.reason and "> 50% of TTFT 200 ms" in cap.reason


def test_tpot_infeasible(h800: Accelerator, llama8b: LLMModel) -> None:
    # batch 1 needs ≥ 16e9 / 2.345e12 = 6.82 ms per token > 5 ms
    cap = replica_capacity(llama8b, h800, TokenProfile(1000, 100), LatencySLO(2000, 5), tp=1)
    assert cap.requests_per_s == 0
    assert cap.binding is Binding.TPOT
    assert cap.reason.startswith("TPOT infeasible: even batch 1 takes 7.")


def test_no_room_for_one_sequence(h800: Accelerator, llama8b: LLMModel) -> None:
    # 500k-token context: 131,072 · 501,000 = 65.7 GB of KV > 56 GB left on one card
    cap = replica_capacity(llama8b, h800, TokenProfile(500_000, 1000), NO_SLO, tp=1)
    assert cap.requests_per_s == 0
    assert cap.binding is Binding.MEMORY
    assert "needs 65.7 GB" in cap.reason


def test_does_not_fit_is_a_value(h800: Accelerator, deepseek_v3: LLMModel) -> None:
    rtx = replace(h800, name="RTX 4090", mem_gb=24.0)
    cap = replica_capacity(deepseek_v3, rtx, TokenProfile(1000, 200), NO_SLO)
    assert cap.binding is Binding.DOES_NOT_FIT
    assert (cap.tp, cap.requests_per_s) == (16, 0.0)
    # 16 · 24 GB · 0.9 = 345.6 GB usable < 671 GB + 16,384 · 70,272 B = 672.2 GB
    assert "need 672.2 GB; 16 × RTX 4090 offer 345.6 GB usable" in cap.reason


def test_explicit_tp_that_does_not_fit(h800: Accelerator, deepseek_v3: LLMModel) -> None:
    cap = replica_capacity(deepseek_v3, h800, TokenProfile(1000, 200), NO_SLO, tp=8)
    assert cap.binding is Binding.DOES_NOT_FIT  # 8 · 72 = 576 GB < 671 GB


def test_deepseek_on_h800_spans_two_nodes(h800: Accelerator, deepseek_v3: LLMModel) -> None:
    cap = replica_capacity(deepseek_v3, h800, TokenProfile(1000, 250), LatencySLO(2000, 50))
    assert (cap.tp, cap.gpus) == (16, 16)
    assert cap.feasible
    assert cap.tpot_ms <= 50


def test_auto_tp_grows_to_meet_ttft(h800: Accelerator, llama8b: LLMModel) -> None:
    # 8,000-token prompt, TTFT 500 ms: TP1 prefill 292.8 ms > 250 ms; TP2 292.8 · 1.05 / 2
    # = 153.7 ms fits
    cap = replica_capacity(llama8b, h800, TokenProfile(8000, 100), LatencySLO(500, 100))
    assert cap.tp == 2
    assert cap.feasible


def test_auto_tp_reports_smallest_when_nothing_meets_slo(
    h800: Accelerator, llama8b: LLMModel
) -> None:
    cap = replica_capacity(llama8b, h800, TokenProfile(1000, 100), LatencySLO(2000, 0.5))
    assert (cap.tp, cap.binding, cap.requests_per_s) == (1, Binding.TPOT, 0.0)


def test_memoized_by_value(h800: Accelerator, llama8b: LLMModel) -> None:
    a = replica_capacity(llama8b, h800, TokenProfile(700, 300), LatencySLO(1000, 40))
    b = replica_capacity(
        replace(llama8b), replace(h800), TokenProfile(700, 300), LatencySLO(1000, 40)
    )
    assert a is b


@pytest.mark.parametrize(
    ("prompt", "output"), [(0, 100), (-5, 100), (100, 0), (math.nan, 100), (100, math.inf)]
)
def test_profile_rejects_bad_numbers(prompt: float, output: float) -> None:
    with pytest.raises(InvalidInput, match="must be a positive number"):
        TokenProfile(prompt, output)


@pytest.mark.parametrize(("ttft", "tpot"), [(0, 50), (-1, 50), (2000, math.nan), (2000, 0)])
def test_slo_rejects_bad_numbers(ttft: float, tpot: float) -> None:
    with pytest.raises(InvalidInput, match="must be a positive number"):
        LatencySLO(ttft, tpot)


def test_bad_tp_is_invalid_input(h800: Accelerator, llama8b: LLMModel) -> None:
    with pytest.raises(InvalidInput, match="tensor-parallel degree"):
        replica_capacity(llama8b, h800, TokenProfile(100, 100), NO_SLO, tp=0)


def test_decode_only_throughput(h800: Accelerator, llama8b: LLMModel) -> None:
    # no prefill share: TPOT 20 ms → 6.823 ms + 83.84 µs · B ≤ 20 ms → B = 157
    point = decode_throughput(llama8b, h800, 1, TokenProfile(1000, 1000), 20)
    assert point.batch == 157
    step = (16e9 + 157 * 1500 * KV_8B) / BW_H800
    assert point.tokens_per_s == pytest.approx(157 / step)
    none = decode_throughput(llama8b, h800, 1, TokenProfile(1000, 1000), 1)
    assert (none.batch, none.tokens_per_s) == (0, 0.0)


def test_prefill_tokens_per_s(h800: Accelerator, llama8b: LLMModel) -> None:
    # 1,000 tokens in 32.886 ms = 30,408 tokens/s
    assert prefill_tokens_per_s(llama8b, h800, 1, 1000) == pytest.approx(1000 / prefill_8b_s(1000))
