"""Training speed in reference (H100) GPUs and gang wall-clock time."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from suanli.domain import Accelerator, Fabric, Vendor
from suanli.errors import InvalidInput
from suanli.perf.training import gang_efficiency, speed_factor, wall_hours


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 1.0),  # H800: 989 / 989, NVIDIA stack, NVLink 400 GB/s
        ({"bf16_tflops": 312.0}, 312 / 989),  # A100/A800: 0.3155
        ({"bf16_tflops": 148.0}, 148 / 989),  # H20: 0.1496 — compute-poor for training
        # Ascend 910B: 320 / 989 · 0.7 (CANN/MindSpeed assumption) = 0.2265
        ({"bf16_tflops": 320.0, "vendor": Vendor.HUAWEI, "interconnect_gbps": 392.0}, 0.22649),
        # Cambricon MLU370-X8: 96 / 989 · 0.6 = 0.05824 (MLU-Link 200 GB/s is not PCIe)
        ({"bf16_tflops": 96.0, "vendor": Vendor.CAMBRICON, "interconnect_gbps": 200.0}, 0.05824),
        # RTX 4090: 165.2 / 989 · 0.85 (PCIe only, 64 GB/s) = 0.14198
        ({"bf16_tflops": 165.2, "interconnect_gbps": 64.0}, 0.14198),
    ],
)
def test_speed_factor(h800: Accelerator, changes: dict[str, object], expected: float) -> None:
    assert speed_factor(replace(h800, **changes)) == pytest.approx(expected, abs=5e-6)


@pytest.mark.parametrize(
    ("gpus", "per_node", "fabric", "expected"),
    [
        (8, 8, Fabric.ETHERNET, 1.0),  # one node: NVLink inside, fabric irrelevant
        (4, 8, Fabric.ETHERNET, 1.0),
        (16, 8, Fabric.INFINIBAND, 0.9),  # two nodes on InfiniBand
        (16, 8, Fabric.ROCE, 0.9),
        (16, 8, Fabric.ETHERNET, 0.5),  # two nodes on plain Ethernet
    ],
)
def test_gang_efficiency(gpus: int, per_node: int, fabric: Fabric, expected: float) -> None:
    assert gang_efficiency(gpus, per_node, fabric) == expected


@pytest.mark.parametrize(
    ("work", "gpus", "tflops", "fabric", "expected_h"),
    [
        (800.0, 8, 989.0, Fabric.INFINIBAND, 100.0),  # 800 / (8 · 1.0 · 1.0)
        (800.0, 16, 989.0, Fabric.INFINIBAND, 800 / (16 * 0.9)),  # 55.6 h on two IB nodes
        (800.0, 16, 989.0, Fabric.ETHERNET, 100.0),  # 800 / (16 · 0.5): no faster than 8
        (100.0, 4, 312.0, Fabric.INFINIBAND, 100 / (4 * 312 / 989)),  # A100: 79.25 h
        (0.0, 8, 989.0, Fabric.INFINIBAND, 0.0),
    ],
)
def test_wall_hours(
    h800: Accelerator, work: float, gpus: int, tflops: float, fabric: Fabric, expected_h: float
) -> None:
    gpu = replace(h800, bf16_tflops=tflops)
    assert wall_hours(work, gpus, gpu, 8, fabric) == pytest.approx(expected_h)


@pytest.mark.parametrize(
    ("work", "gpus", "per_node"), [(-1.0, 8, 8), (math.nan, 8, 8), (10.0, 0, 8), (10.0, 8, 0)]
)
def test_wall_hours_rejects_bad_input(
    h800: Accelerator, work: float, gpus: int, per_node: int
) -> None:
    with pytest.raises(InvalidInput):
        wall_hours(work, gpus, h800, per_node, Fabric.INFINIBAND)
