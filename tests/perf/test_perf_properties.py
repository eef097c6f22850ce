"""Properties of the roofline that hold for any model and card, checked with hypothesis."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from suanli.domain import Accelerator, LLMModel, Vendor
from suanli.perf.capacity import LatencySLO, TokenProfile, replica_capacity
from suanli.perf.efficiency import TTFT_PREFILL_FRACTION
from suanli.perf.inference import (
    TP_DEGREES,
    decode_step_s,
    fits,
    max_concurrent,
    prefill_s,
)


@st.composite
def models(draw: st.DrawFn) -> LLMModel:
    total = draw(st.floats(0.5, 1000.0))
    heads = draw(st.sampled_from([8, 16, 32, 64, 128]))
    head_dim = draw(st.sampled_from([64, 128]))
    kv_heads = draw(st.sampled_from([1, 2, 4, 8, heads]))
    return LLMModel(
        name="m",
        total_params_b=total,
        active_params_b=draw(st.floats(0.1, 1.0)) * total,
        layers=draw(st.integers(1, 128)),
        hidden=heads * head_dim,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        kv_elems_per_token_per_layer=draw(st.sampled_from([2 * kv_heads * head_dim, 576])),
        weight_bytes_per_param=draw(st.sampled_from([0.5, 1.0, 2.0])),
        kv_bytes_per_elem=draw(st.sampled_from([1.0, 2.0])),
        source="hypothesis",
        estimate=True,
    )


@st.composite
def gpus(draw: st.DrawFn) -> Accelerator:
    bf16 = draw(st.floats(20.0, 2500.0))
    return Accelerator(
        name="g",
        vendor=Vendor.NVIDIA,
        bf16_tflops=bf16,
        fp8_tflops=draw(st.sampled_from([None, 2 * bf16])),
        mem_gb=draw(st.floats(16.0, 192.0)),
        mem_bw_tbps=draw(st.floats(0.3, 8.0)),
        interconnect_gbps=400.0,
        tdp_w=500.0,
        domestic=False,
        source="hypothesis",
        estimate=True,
    )


profiles = st.builds(TokenProfile, st.floats(1.0, 32_000.0), st.floats(1.0, 4_000.0))
slos = st.builds(
    LatencySLO,
    st.one_of(st.just(math.inf), st.floats(10.0, 20_000.0)),
    st.one_of(st.just(math.inf), st.floats(2.0, 500.0)),
)
tps = st.sampled_from(TP_DEGREES)


@given(models(), gpus(), st.floats(1.0, 3.0), tps, st.integers(1, 4096), st.floats(1, 1e5))
def test_more_bandwidth_never_slows_decode(
    model: LLMModel, gpu: Accelerator, factor: float, tp: int, batch: int, context: float
) -> None:
    faster = replace(gpu, mem_bw_tbps=gpu.mem_bw_tbps * factor)
    slow = decode_step_s(model, gpu, tp, batch, context)
    assert decode_step_s(model, faster, tp, batch, context) <= slow


@given(models(), gpus(), tps, st.floats(1.0, 1e5), st.floats(0.0, 1e5))
def test_longer_prompts_never_shorten_prefill(
    model: LLMModel, gpu: Accelerator, tp: int, prompt: float, extra: float
) -> None:
    assert prefill_s(model, gpu, tp, prompt + extra) >= prefill_s(model, gpu, tp, prompt)


@given(models(), gpus(), tps, st.integers(1, 4095), st.floats(1, 1e5))
def test_bigger_batches_never_step_faster(
    model: LLMModel, gpu: Accelerator, tp: int, batch: int, context: float
) -> None:
    step = decode_step_s(model, gpu, tp, batch, context)
    assert decode_step_s(model, gpu, tp, batch + 1, context) >= step


@given(models(), gpus(), profiles, slos, st.sampled_from(TP_DEGREES[:-1]))
def test_more_gpus_never_lower_capacity_when_it_fits(
    model: LLMModel, gpu: Accelerator, profile: TokenProfile, slo: LatencySLO, tp: int
) -> None:
    if not fits(model, gpu, tp):
        return
    small = replica_capacity(model, gpu, profile, slo, tp)
    large = replica_capacity(model, gpu, profile, slo, tp * 2)
    assert large.requests_per_s >= small.requests_per_s * (1 - 1e-12)


@given(models(), gpus(), profiles, slos)
def test_a_feasible_replica_meets_its_slo_and_memory(
    model: LLMModel, gpu: Accelerator, profile: TokenProfile, slo: LatencySLO
) -> None:
    cap = replica_capacity(model, gpu, profile, slo)
    if not cap.feasible:
        assert cap.requests_per_s == cap.output_tokens_per_s == 0
        assert cap.reason
        return
    assert cap.tpot_ms <= slo.tpot_ms * (1 + 1e-12)
    assert cap.ttft_ms <= TTFT_PREFILL_FRACTION * slo.ttft_ms * (1 + 1e-12)
    assert 1 <= cap.batch <= max_concurrent(model, gpu, cap.tp, profile.context_tokens)
    # each request costs its prefill plus its share of O decode steps of the whole replica
    assert cap.requests_per_s * cap.ttft_ms / 1e3 < 1.0
