"""Hand-built accelerators and models for the perf tests (figures as in DESIGN.md)."""

from __future__ import annotations

import pytest

from suanli.domain import Accelerator, LLMModel, Vendor


def make_gpu(
    name: str = "H800",
    *,
    bf16_tflops: float = 989.0,
    fp8_tflops: float | None = 1979.0,
    mem_gb: float = 80.0,
    mem_bw_tbps: float = 3.35,
    interconnect_gbps: float = 400.0,
    vendor: Vendor = Vendor.NVIDIA,
) -> Accelerator:
    return Accelerator(
        name=name,
        vendor=vendor,
        bf16_tflops=bf16_tflops,
        fp8_tflops=fp8_tflops,
        mem_gb=mem_gb,
        mem_bw_tbps=mem_bw_tbps,
        interconnect_gbps=interconnect_gbps,
        tdp_w=700.0,
        domestic=vendor is not Vendor.NVIDIA,
        source="test",
        estimate=False,
    )


@pytest.fixture(scope="session")
def h800() -> Accelerator:
    # H800: dense BF16 989 TFLOPS, FP8 1979, 80 GB, 3.35 TB/s.
    return make_gpu()


@pytest.fixture(scope="session")
def h20() -> Accelerator:
    # H20: 148 BF16 / 296 FP8 TFLOPS, 96 GB, 4.0 TB/s — bandwidth-rich, compute-poor.
    return make_gpu("H20", bf16_tflops=148.0, fp8_tflops=296.0, mem_gb=96.0, mem_bw_tbps=4.0)


@pytest.fixture(scope="session")
def llama8b() -> LLMModel:
    # Llama-3.1-8B: 32 layers, 4096 hidden, 32 heads, 8 KV heads × 128, BF16.
    return LLMModel(
        name="Llama-3.1-8B",
        total_params_b=8.0,
        active_params_b=8.0,
        layers=32,
        hidden=4096,
        heads=32,
        kv_heads=8,
        head_dim=128,
        kv_elems_per_token_per_layer=2 * 8 * 128,
        weight_bytes_per_param=2.0,
        kv_bytes_per_elem=2.0,
        source="test",
        estimate=False,
    )


@pytest.fixture(scope="session")
def deepseek_v3() -> LLMModel:
    # DeepSeek-V3: 671B total, 37B active, 61 layers, MLA 576 elems/token/layer, FP8 weights.
    return LLMModel(
        name="DeepSeek-V3",
        total_params_b=671.0,
        active_params_b=37.0,
        layers=61,
        hidden=7168,
        heads=128,
        kv_heads=128,
        head_dim=128,
        kv_elems_per_token_per_layer=576,
        weight_bytes_per_param=1.0,
        kv_bytes_per_elem=2.0,
        source="test",
        estimate=False,
    )
