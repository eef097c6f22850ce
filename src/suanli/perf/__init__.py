"""Performance model: what a GPU type delivers for LLM inference and training.

Pure arithmetic (no I/O except reading the shipped published-figures CSV):

- :mod:`~suanli.perf.inference` — roofline formulas: KV bytes, weights, tensor-parallel
  fit, prefill (compute-bound) and decode (bandwidth-bound) times, KV-limited batch.
- :mod:`~suanli.perf.capacity` — :func:`replica_capacity`, the memoized entry point the
  clearing engine calls: requests/s of one replica under TTFT/TPOT SLOs and why.
- :mod:`~suanli.perf.training` — speed in reference (H100) GPUs and gang wall-clock time.
- :mod:`~suanli.perf.validate` — predictions against published serving figures.
- :mod:`~suanli.perf.efficiency` — every efficiency constant, with its reasoning.
"""

from suanli.perf.capacity import (
    Binding,
    DecodeThroughput,
    LatencySLO,
    ReplicaCapacity,
    TokenProfile,
    decode_throughput,
    prefill_tokens_per_s,
    replica_capacity,
)
from suanli.perf.inference import (
    TP_DEGREES,
    decode_step_s,
    fits,
    kv_bytes_per_token,
    max_concurrent,
    min_tp,
    peak_flops,
    prefill_s,
    weights_bytes,
)
from suanli.perf.training import REFERENCE_GPU, gang_efficiency, speed_factor, wall_hours
from suanli.perf.validate import (
    PublishedFigure,
    ValidationRow,
    load_published_figures,
    validate,
)

__all__ = [
    "REFERENCE_GPU",
    "TP_DEGREES",
    "Binding",
    "DecodeThroughput",
    "LatencySLO",
    "PublishedFigure",
    "ReplicaCapacity",
    "TokenProfile",
    "ValidationRow",
    "decode_step_s",
    "decode_throughput",
    "fits",
    "gang_efficiency",
    "kv_bytes_per_token",
    "load_published_figures",
    "max_concurrent",
    "min_tp",
    "peak_flops",
    "prefill_s",
    "prefill_tokens_per_s",
    "replica_capacity",
    "speed_factor",
    "validate",
    "wall_hours",
    "weights_bytes",
]
