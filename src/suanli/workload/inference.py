"""Token profiles of LLM inference fitted to public traces (committed parameters).

``data/inference_fit.toml`` holds, per profile, the mean / median / p90 and a lognormal fit
of prompt and output tokens, and the trace's arrival rate and its per-minute spread. It is
written by ``bench/fit_inference_traces.py`` from the Azure LLM 2023 (code, conversation)
and Mooncake traces; no trace is needed at run time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from suanli.errors import UnknownName

__all__ = ["InferenceProfile", "inference_profile", "inference_profiles"]


@dataclass(frozen=True, slots=True)
class InferenceProfile:
    """Tokens per request of one kind of traffic; services use the means."""

    name: str
    source: str
    prompt_tokens_mean: float
    output_tokens_mean: float
    prompt_tokens_p50: float
    output_tokens_p50: float
    prompt_tokens_p90: float
    output_tokens_p90: float
    prompt_log_mean: float
    prompt_log_std: float
    output_log_mean: float
    output_log_std: float
    trace_rate_rps: float
    rate_cv_per_minute: float


@cache
def inference_profiles() -> Mapping[str, InferenceProfile]:
    """Every shipped profile by name (``code``, ``conversation``, ``long-context``)."""
    text = resources.files("suanli.workload").joinpath("data/inference_fit.toml").read_text()
    raw = tomllib.loads(text)["profiles"]
    return {
        name: InferenceProfile(
            name=name,
            source=p["source"],
            prompt_tokens_mean=p["prompt_mean"],
            output_tokens_mean=p["output_mean"],
            prompt_tokens_p50=p["prompt_p50"],
            output_tokens_p50=p["output_p50"],
            prompt_tokens_p90=p["prompt_p90"],
            output_tokens_p90=p["output_p90"],
            prompt_log_mean=p["prompt_log_mean"],
            prompt_log_std=p["prompt_log_std"],
            output_log_mean=p["output_log_mean"],
            output_log_std=p["output_log_std"],
            trace_rate_rps=p["rate_rps"],
            rate_cv_per_minute=p["rate_cv_per_minute"],
        )
        for name, p in raw.items()
    }


def inference_profile(name: str) -> InferenceProfile:
    """The profile called ``name``; UnknownName with the nearest names otherwise."""
    profiles = inference_profiles()
    if name not in profiles:
        raise UnknownName("inference profile", name, profiles)
    return profiles[name]
