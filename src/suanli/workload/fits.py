"""Fitted workload distributions (committed parameters; no trace needed at run time)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

__all__ = ["JobSizeFit", "job_size_fit", "sample_jobs_shape"]


@dataclass(frozen=True)
class JobSizeFit:
    gpus: tuple[int, ...]
    gpu_weights: tuple[float, ...]
    log_mean_s: float
    log_std_s: float
    tail_share: float
    tail_gpus: tuple[int, ...]
    tail_weights: tuple[float, ...]
    tail_log_mean_h: float
    tail_log_std_h: float
    source: str


@cache
def job_size_fit() -> JobSizeFit:
    """The Alibaba openb fit shipped in ``workload/data``."""
    text = resources.files("suanli.workload").joinpath("data/alibaba_openb_fit.toml").read_text()
    raw = tomllib.loads(text)
    return JobSizeFit(
        gpus=tuple(raw["gpus"]["values"]),
        gpu_weights=tuple(raw["gpus"]["weights"]),
        log_mean_s=raw["duration"]["log_mean"],
        log_std_s=raw["duration"]["log_std"],
        tail_share=raw["training_tail"]["share"],
        tail_gpus=tuple(raw["training_tail"]["gpus"]),
        tail_weights=tuple(raw["training_tail"]["weights"]),
        tail_log_mean_h=raw["training_tail"]["log_mean_hours"],
        tail_log_std_h=raw["training_tail"]["log_std_hours"],
        source=raw["source"],
    )


def sample_jobs_shape(
    fit: JobSizeFit, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` jobs: (GPUs, duration hours on reference GPUs)."""
    w = np.array(fit.gpu_weights) / sum(fit.gpu_weights)
    gpus = rng.choice(np.array(fit.gpus), size=n, p=w)
    hours = np.exp(rng.normal(fit.log_mean_s, fit.log_std_s, size=n)) / 3600.0
    tail = rng.random(n) < fit.tail_share
    tw = np.array(fit.tail_weights) / sum(fit.tail_weights)
    gpus[tail] = rng.choice(np.array(fit.tail_gpus), size=int(tail.sum()), p=tw)
    hours[tail] = np.exp(rng.normal(fit.tail_log_mean_h, fit.tail_log_std_h, size=int(tail.sum())))
    return gpus.astype(np.int64), np.clip(hours, 1.0 / 60, 24.0 * 30)
