"""Every efficiency constant of the performance model, in one place, with its reasoning.

A roofline says what the silicon could do; these few factors say how much of it real
serving and training software gets. They are deliberately few and global: no per-model or
per-figure fudge. ``suanli perf validate`` shows how far the resulting predictions land
from published figures.

Inference
    MFU_PREFILL
        Share of dense peak FLOP/s reached by compute-bound work (prefill, and the compute
        floor of a decode step). Well-tuned GEMMs reach 60–80 % of peak; attention,
        norms, sampling and launch gaps bring an end-to-end prefill to about half.
    MBU_DECODE
        Share of peak HBM bandwidth reached by a decode step. Memory-bound kernels reach
        80–90 % in isolation (e.g. FlashMLA ≈ 3 TB/s of 3.35 on H800); a whole serving
        step with scheduling, small kernels and KV paging is commonly put at 60–80 %.
    MEMORY_RESERVE_FRACTION
        Share of card memory never available to weights or KV cache: CUDA context,
        activations, allocator fragmentation. vLLM and TensorRT-LLM both default to using
        90 % of the card.
    MIN_KV_TOKENS
        A replica must have room for at least this many tokens of KV cache beyond its
        weights to count as fitting (a replica that holds one short sequence is useless).
    TP_COMM_OVERHEAD_PER_DOUBLING
        Each doubling of the tensor-parallel degree loses this share of the ideal speed-up
        to all-reduces: effective parallelism ``tp / (1 + f · log2 tp)``. Monotone — more
        GPUs never make a step slower for f < 1.
    TTFT_PREFILL_FRACTION
        A replica's prefill estimate may use at most this share of the TTFT SLO; the rest
        is the allowance for queueing behind other prefills and decode steps (the network
        RTT is checked separately by the clearing engine).
    GPUS_PER_NODE
        Cards per server assumed when a replica spans nodes (TP 16 = two 8-GPU nodes).

Training
    SOFTWARE_STACK_EFFICIENCY
        ASSUMPTION. Share of an NVIDIA/CUDA training MFU that a vendor's software stack
        reaches on the same model at the same dense BF16 peak. CUDA (cuDNN, FlashAttention,
        Megatron, NCCL) is the reference; Ascend (CANN, MindSpeed, HCCL) and Cambricon
        (Neuware) have fewer fused kernels and less tuning. Public reports put domestic
        training efficiency at roughly 60–80 % of NVIDIA's; we take 0.7 and 0.6.
    PCIE_TRAINING_EFFICIENCY / PCIE_INTERCONNECT_MAX_GBPS
        Cards whose only scale-up link is PCIe (≤ 128 GB/s) spend longer in gradient
        all-reduces inside a node than NVLink/HCCS cards.
    MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH / MULTI_NODE_EFFICIENCY_ETHERNET
        Scaling efficiency of a gang that spans nodes: ≈ 90 % on InfiniBand/RoCE
        (typical data-parallel scaling of large-model training), ≈ 50 % on plain
        Ethernet where gradient exchange stalls the step (ASSUMPTION).
"""

from __future__ import annotations

from types import MappingProxyType

from suanli.domain import Vendor

__all__ = [
    "GPUS_PER_NODE",
    "MBU_DECODE",
    "MEMORY_RESERVE_FRACTION",
    "MFU_PREFILL",
    "MIN_KV_TOKENS",
    "MULTI_NODE_EFFICIENCY_ETHERNET",
    "MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH",
    "PCIE_INTERCONNECT_MAX_GBPS",
    "PCIE_TRAINING_EFFICIENCY",
    "SOFTWARE_STACK_EFFICIENCY",
    "TP_COMM_OVERHEAD_PER_DOUBLING",
    "TTFT_PREFILL_FRACTION",
]

MFU_PREFILL = 0.5
MBU_DECODE = 0.7
MEMORY_RESERVE_FRACTION = 0.10
MIN_KV_TOKENS = 16_384
TP_COMM_OVERHEAD_PER_DOUBLING = 0.05
TTFT_PREFILL_FRACTION = 0.5
GPUS_PER_NODE = 8

SOFTWARE_STACK_EFFICIENCY = MappingProxyType(
    {Vendor.NVIDIA: 1.0, Vendor.HUAWEI: 0.7, Vendor.CAMBRICON: 0.6}
)
PCIE_INTERCONNECT_MAX_GBPS = 128.0
PCIE_TRAINING_EFFICIENCY = 0.85
MULTI_NODE_EFFICIENCY_HIGH_BANDWIDTH = 0.9
MULTI_NODE_EFFICIENCY_ETHERNET = 0.5
