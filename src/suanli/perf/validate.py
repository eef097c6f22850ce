"""The performance model against published serving figures: a transparent table.

Each published figure (``data/published_figures.csv``, with its source and a note on
how it compares) is recomputed by the model with the figure's own setup — model, card,
tensor-parallel degree, precision, token profile — and reported with the error
``(predicted − published) / published``. The goal is honesty, not a perfect fit: no
constant is tuned per figure, and the notes say what the roofline leaves out.

Metrics:

``prefill_tokens_per_s_per_node``
    prompt tokens/s of a replica prefilling back to back, times ``gpus / tp`` (a node's
    share of the replica). ``tp`` empty = the smallest fitting degree.
``decode_tokens_per_s_per_node``
    decode-only (disaggregated) output tokens/s at the largest batch whose step fits
    ``tpot_ms`` and whose KV fits, times ``gpus / tp``. For a MoE model at that batch
    every expert is read once per step, so weight traffic is amortized over the batch.
``offline_output_tokens_per_s``
    :func:`~suanli.perf.capacity.replica_capacity` with no SLO (offline max throughput,
    prefill time-shared with decode), times ``gpus / tp`` replicas.
``offline_output_tokens_per_s_ratio``
    the same on ``gpu`` divided by the same on ``baseline_gpu``.

``weight_bytes_per_param`` / ``kv_bytes_per_elem`` override the catalogue's precision
(e.g. the FP8 checkpoints NVIDIA benchmarks). :func:`load_published_figures` is the only
function here that does I/O (reads the shipped CSV).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from suanli.domain import Accelerator, LLMModel
from suanli.errors import DataError
from suanli.perf.capacity import (
    LatencySLO,
    TokenProfile,
    decode_throughput,
    prefill_tokens_per_s,
    replica_capacity,
)
from suanli.perf.inference import min_tp

__all__ = [
    "Metric",
    "PublishedFigure",
    "ValidationRow",
    "load_published_figures",
    "parse_published_figures",
    "validate",
]


class Metric(StrEnum):
    PREFILL_PER_NODE = "prefill_tokens_per_s_per_node"
    DECODE_PER_NODE = "decode_tokens_per_s_per_node"
    OFFLINE_OUTPUT = "offline_output_tokens_per_s"
    OFFLINE_OUTPUT_RATIO = "offline_output_tokens_per_s_ratio"


@dataclass(frozen=True, slots=True)
class PublishedFigure:
    """One published figure and the setup needed to recompute it."""

    id: str
    model: str
    gpu: str
    baseline_gpu: str | None
    gpus: int
    tp: int | None
    metric: Metric
    prompt_tokens: float
    output_tokens: float
    tpot_ms: float | None
    weight_bytes_per_param: float | None
    kv_bytes_per_elem: float | None
    published: float
    unit: str
    source: str
    note: str


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """A figure, the model's prediction for it, and the relative error in percent."""

    id: str
    model: str
    gpu: str
    setup: str
    predicted: float
    published: float
    unit: str
    error_pct: float
    source: str
    note: str


_NO_SLO = LatencySLO(ttft_ms=math.inf, tpot_ms=math.inf)


def validate(
    figures: Iterable[PublishedFigure],
    model_of: Callable[[str], LLMModel],
    gpu_of: Callable[[str], Accelerator],
) -> tuple[ValidationRow, ...]:
    """Recompute every figure; names resolve through ``model_of`` / ``gpu_of``."""
    rows = []
    for fig in figures:
        model = _with_precision(model_of(fig.model), fig)
        gpu = gpu_of(fig.gpu)
        predicted, tp = _predict(fig, model, gpu, gpu_of)
        rows.append(
            ValidationRow(
                id=fig.id,
                model=fig.model,
                gpu=fig.gpu if fig.baseline_gpu is None else f"{fig.gpu} / {fig.baseline_gpu}",
                setup=_setup(fig, model, tp),
                predicted=predicted,
                published=fig.published,
                unit=fig.unit,
                error_pct=(predicted - fig.published) / fig.published * 100.0,
                source=fig.source,
                note=fig.note,
            )
        )
    return tuple(rows)


def _with_precision(model: LLMModel, fig: PublishedFigure) -> LLMModel:
    return dataclasses.replace(
        model,
        weight_bytes_per_param=(
            fig.weight_bytes_per_param
            if fig.weight_bytes_per_param is not None
            else model.weight_bytes_per_param
        ),
        kv_bytes_per_elem=(
            fig.kv_bytes_per_elem if fig.kv_bytes_per_elem is not None else model.kv_bytes_per_elem
        ),
    )


def _predict(
    fig: PublishedFigure,
    model: LLMModel,
    gpu: Accelerator,
    gpu_of: Callable[[str], Accelerator],
) -> tuple[float, int | None]:
    tp = fig.tp if fig.tp is not None else min_tp(model, gpu)
    if tp is None:
        return 0.0, None
    profile = TokenProfile(fig.prompt_tokens, fig.output_tokens)
    replicas = fig.gpus / tp
    if fig.metric is Metric.PREFILL_PER_NODE:
        return prefill_tokens_per_s(model, gpu, tp, fig.prompt_tokens) * replicas, tp
    if fig.metric is Metric.DECODE_PER_NODE:
        tpot_ms = fig.tpot_ms if fig.tpot_ms is not None else math.inf
        return decode_throughput(model, gpu, tp, profile, tpot_ms).tokens_per_s * replicas, tp
    offline = replica_capacity(model, gpu, profile, _NO_SLO, tp).output_tokens_per_s * replicas
    if fig.metric is Metric.OFFLINE_OUTPUT:
        return offline, tp
    assert fig.baseline_gpu is not None  # checked when the figure was parsed
    base = replica_capacity(model, gpu_of(fig.baseline_gpu), profile, _NO_SLO, tp)
    base_offline = base.output_tokens_per_s * replicas
    return (offline / base_offline if base_offline > 0 else math.inf), tp


def _setup(fig: PublishedFigure, model: LLMModel, tp: int | None) -> str:
    tp_text = f"TP{tp}" if tp is not None else "does not fit"
    precision = "FP8" if model.weight_bytes_per_param <= 1.0 else "BF16"
    tokens = f"{fig.prompt_tokens:,.0f}/{fig.output_tokens:,.0f}"
    tpot = f", TPOT {fig.tpot_ms:,.0f} ms" if fig.tpot_ms is not None else ""
    return f"{tp_text} {precision}, in/out {tokens}{tpot}, {fig.metric.value}"


@cache
def load_published_figures() -> tuple[PublishedFigure, ...]:
    """The figures shipped with suanli (read once)."""
    text = (
        resources.files("suanli.perf")
        .joinpath("data/published_figures.csv")
        .read_text(encoding="utf-8")
    )
    return parse_published_figures(text)


def parse_published_figures(text: str) -> tuple[PublishedFigure, ...]:
    """Parse figures from CSV text; a malformed row raises :class:`DataError` naming it."""
    out = []
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            out.append(_parse_row(row))
        except (KeyError, ValueError) as exc:
            raise DataError(f"published figures, line {line_no}: {exc}") from exc
    return tuple(out)


def _opt_float(row: Mapping[str, str], key: str) -> float | None:
    value = row[key].strip()
    return float(value) if value else None


def _parse_row(row: Mapping[str, str]) -> PublishedFigure:
    metric = Metric(row["metric"])
    baseline = row["baseline_gpu"].strip() or None
    if (metric is Metric.OFFLINE_OUTPUT_RATIO) != (baseline is not None):
        raise ValueError("baseline_gpu is required for a ratio metric and only for it")
    tp_text = row["tp"].strip()
    published = float(row["published"])
    prompt_tokens = float(row["prompt_tokens"])
    output_tokens = float(row["output_tokens"])
    for name, value in (
        ("published", published),
        ("prompt_tokens", prompt_tokens),
        ("output_tokens", output_tokens),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number, got {value}")
    return PublishedFigure(
        id=row["id"],
        model=row["model"],
        gpu=row["gpu"],
        baseline_gpu=baseline,
        gpus=int(row["gpus"]),
        tp=int(tp_text) if tp_text else None,
        metric=metric,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        tpot_ms=_opt_float(row, "tpot_ms"),
        weight_bytes_per_param=_opt_float(row, "weight_bytes_per_param"),
        kv_bytes_per_elem=_opt_float(row, "kv_bytes_per_elem"),
        published=published,
        unit=row["unit"],
        source=row["source"],
        note=row["note"],
    )
