"""Training throughput normalized to reference GPU-hours (H100 SXM = 1.0).

Batch work is priced and sized in reference GPU-hours: one hour of one H100 SXM. A card's
speed in reference GPUs, and a gang's wall-clock time, are::

    speed_factor(gpu) = bf16_tflops / 989
                        · SOFTWARE_STACK_EFFICIENCY[vendor]
                        · (PCIE_TRAINING_EFFICIENCY if scale-up is PCIe only, else 1)

    gang_efficiency   = 1                                       one node
                      = MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH    several nodes, IB / RoCE
                      = MULTI_NODE_EFFICIENCY_ETHERNET          several nodes, Ethernet

    wall_hours        = work_ref_gpu_hours / (gpus · speed_factor · gang_efficiency)

Large-model training is compute-bound, so dense BF16 throughput sets the speed; the
factors (see :mod:`suanli.perf.efficiency`) are stated assumptions, not measurements.
"""

from __future__ import annotations

import math

from suanli.domain import Accelerator, Fabric
from suanli.errors import InvalidInput
from suanli.perf.efficiency import (
    MULTI_NODE_EFFICIENCY_ETHERNET,
    MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH,
    PCIE_INTERCONNECT_MAX_GBPS,
    PCIE_TRAINING_EFFICIENCY,
    SOFTWARE_STACK_EFFICIENCY,
)

__all__ = [
    "REFERENCE_BF16_TFLOPS",
    "REFERENCE_GPU",
    "gang_efficiency",
    "speed_factor",
    "wall_hours",
]

REFERENCE_GPU = "H100"
REFERENCE_BF16_TFLOPS = 989.0
"""Dense BF16 TFLOPS of the reference card, H100 SXM (NVIDIA datasheet)."""


def speed_factor(gpu: Accelerator) -> float:
    """Training throughput of one ``gpu`` in reference (H100) GPUs."""
    stack = SOFTWARE_STACK_EFFICIENCY[gpu.vendor]
    link = PCIE_TRAINING_EFFICIENCY if gpu.interconnect_gbps <= PCIE_INTERCONNECT_MAX_GBPS else 1.0
    return gpu.bf16_tflops / REFERENCE_BF16_TFLOPS * stack * link


def gang_efficiency(gpus: int, gpus_per_node: int, fabric: Fabric) -> float:
    """Scaling efficiency of a gang of ``gpus``: 1 inside a node, less across nodes."""
    if gpus < 1 or gpus_per_node < 1:
        raise InvalidInput(f"gpus and gpus_per_node must be ≥ 1, got {gpus}, {gpus_per_node}")
    if gpus <= gpus_per_node:
        return 1.0
    if fabric.high_bandwidth:
        return MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH
    return MULTI_NODE_EFFICIENCY_ETHERNET


def wall_hours(
    work_ref_gpu_hours: float,
    gpus: int,
    gpu: Accelerator,
    gpus_per_node: int,
    fabric: Fabric,
) -> float:
    """Wall-clock hours for ``work_ref_gpu_hours`` of reference work on a gang of ``gpus``."""
    if not (math.isfinite(work_ref_gpu_hours) and work_ref_gpu_hours >= 0):
        raise InvalidInput(
            f"work_ref_gpu_hours must be a non-negative number, got {work_ref_gpu_hours!r}"
        )
    rate = gpus * speed_factor(gpu) * gang_efficiency(gpus, gpus_per_node, fabric)
    return work_ref_gpu_hours / rate
