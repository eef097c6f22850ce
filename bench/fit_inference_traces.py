"""Fit the inference token profiles the simulator ships, from the public traces.

Usage: python bench/fit_inference_traces.py [TRACES_DIR]   (default ../shared/traces)

Reads the Azure LLM inference trace 2023 (code and conversation) and the Mooncake trace,
and prints the TOML that ``src/suanli/workload/data/inference_fit.toml`` ships, so the fit
can be checked and refreshed; the project never reads the traces at run time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from suanli.sim.traces import InferenceTrace, read_inference_trace

TRACES = {
    "code": ("azure_llm_2023_code.csv", "Azure LLM inference trace 2023, code (CC-BY-4.0)"),
    "conversation": (
        "azure_llm_2023_conv.csv",
        "Azure LLM inference trace 2023, conversation (CC-BY-4.0)",
    ),
    "long-context": (
        "mooncake_synthetic_trace.jsonl",
        "Mooncake trace, Moonshot AI Kimi (Apache-2.0)",
    ),
}


def fit(trace: InferenceTrace) -> dict[str, float]:
    """Means, quantiles and lognormal parameters of tokens; arrival rate and its spread."""
    out: dict[str, float] = {
        "requests": float(len(trace.arrival_s)),
        "duration_s": round(trace.duration_s, 1),
        "rate_rps": round(len(trace.arrival_s) / max(trace.duration_s, 1e-9), 4),
    }
    for name, x in (("prompt", trace.prompt_tokens), ("output", trace.output_tokens)):
        logs = np.log(np.maximum(x, 1.0))
        out[f"{name}_mean"] = round(float(x.mean()), 1)
        out[f"{name}_p50"] = round(float(np.median(x)), 1)
        out[f"{name}_p90"] = round(float(np.percentile(x, 90)), 1)
        out[f"{name}_log_mean"] = round(float(logs.mean()), 4)
        out[f"{name}_log_std"] = round(float(logs.std()), 4)
    per_min = np.bincount((trace.arrival_s // 60).astype(np.int64))
    if len(per_min) > 1:
        per_min = per_min[:-1]  # the last minute is partial
    out["rate_cv_per_minute"] = round(float(per_min.std() / max(per_min.mean(), 1e-9)), 4)
    return out


def main(traces: Path) -> int:
    print("# Token profiles of LLM inference, fitted to public traces.")
    print("# Recompute with: python bench/fit_inference_traces.py ../shared/traces")
    print("# The project never reads the traces at run time; these numbers are what it ships.")
    for name, (file, source) in TRACES.items():
        path = traces / file
        if not path.exists():
            print(f"{path}: not found (the traces live in ../shared/traces)", file=sys.stderr)
            return 2
        params = fit(read_inference_trace(path))
        print(f'\n[profiles.{name}]\nsource = "{source}: {file}"')
        for key, value in params.items():
            print(f"{key} = {int(value) if key == 'requests' else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/traces")))
