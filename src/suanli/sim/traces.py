"""Trace files the simulator can replay, read and checked line by line.

- inference: the Azure LLM inference trace 2023 (CSV ``TIMESTAMP,ContextTokens,
  GeneratedTokens``) or Mooncake (JSON lines with ``timestamp`` in ms, ``input_length``,
  ``output_length``, ``hash_ids``); which one is told by the content, not the file name;
- batch jobs: the Alibaba GPU cluster trace 2023 pod list (``openb_pod_list_*.csv``: pods
  with ``num_gpu``, ``creation_time``, ``scheduled_time``, ``deletion_time`` in seconds).

A malformed file raises :class:`~suanli.errors.InvalidInput` naming the file and the line.
Traces are inputs the user gives; the package itself ships only fitted parameters.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from suanli.errors import InvalidInput

__all__ = [
    "InferenceTrace",
    "JobsTrace",
    "detect_inference_format",
    "read_inference_trace",
    "read_jobs_trace",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_ALIBABA_COLUMNS = ("num_gpu", "creation_time", "deletion_time", "scheduled_time")


@dataclass(frozen=True)
class InferenceTrace:
    """Requests of one trace: arrival (s from the first), prompt and output tokens."""

    format: str  # "azure" | "mooncake"
    source: str
    arrival_s: F64
    prompt_tokens: F64
    output_tokens: F64

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self.arrival_s) else 0.0


@dataclass(frozen=True)
class JobsTrace:
    """GPU pods of a cluster trace: arrival (s from the first), GPUs, lifetime (s)."""

    source: str
    arrival_s: F64
    gpus: I64
    duration_s: F64


def _lines(path: Path) -> Generator[tuple[int, str], None, None]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read ({exc})") from None


def detect_inference_format(path: Path) -> str:
    """``"azure"`` or ``"mooncake"`` from the first non-empty line; InvalidInput otherwise."""
    lines = _lines(path)
    try:
        return _detect(path, lines)
    finally:
        lines.close()


def _detect(path: Path, lines: Iterator[tuple[int, str]]) -> str:
    for n, line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            return "mooncake"
        header = [c.strip() for c in text.split(",")]
        if all(c in header for c in _AZURE_COLUMNS):
            return "azure"
        raise InvalidInput(
            f"{path}:{n}: not an inference trace: expected an Azure CSV header "
            f"({','.join(_AZURE_COLUMNS)}) or Mooncake JSON lines"
        )
    raise InvalidInput(f"{path}: empty file, not an inference trace")


def read_inference_trace(path: Path) -> InferenceTrace:
    """Parse an Azure CSV or Mooncake JSONL trace (detected by content)."""
    fmt = detect_inference_format(path)
    rows = _read_azure(path) if fmt == "azure" else _read_mooncake(path)
    if not rows:
        raise InvalidInput(f"{path}: the trace has a header but no requests")
    arr = np.array(rows, dtype=np.float64)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    return InferenceTrace(
        format=fmt,
        source=path.name,
        arrival_s=arr[:, 0] - arr[0, 0],
        prompt_tokens=arr[:, 1],
        output_tokens=arr[:, 2],
    )


def _count(path: Path, n: int, field: str, raw: object) -> float:
    if isinstance(raw, bool):
        raise InvalidInput(f"{path}:{n}: {field} must be a whole number ≥ 0, got {raw!r}")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{path}:{n}: {field} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise InvalidInput(f"{path}:{n}: {field} must be a whole number ≥ 0, got {raw!r}")
    return value


def _read_azure(path: Path) -> list[tuple[float, float, float]]:
    rows: list[tuple[float, float, float]] = []
    header: list[str] | None = None
    for n, line in _lines(path):
        if not line.strip():
            continue
        cells = next(csv.reader([line]))
        if header is None:
            header = [c.strip() for c in cells]
            at = {c: header.index(c) for c in _AZURE_COLUMNS}
            continue
        if len(cells) != len(header):
            raise InvalidInput(
                f"{path}:{n}: expected {len(header)} fields ({','.join(header)}), got {len(cells)}"
            )
        stamp = cells[at["TIMESTAMP"]].strip()
        try:
            t = dt.datetime.fromisoformat(_trim_fraction(stamp)).timestamp()
        except ValueError:
            raise InvalidInput(
                f"{path}:{n}: TIMESTAMP {stamp!r} is not a date-time "
                "(expected e.g. 2023-11-16 18:17:03.9799600)"
            ) from None
        rows.append(
            (
                t,
                _count(path, n, "ContextTokens", cells[at["ContextTokens"]].strip()),
                _count(path, n, "GeneratedTokens", cells[at["GeneratedTokens"]].strip()),
            )
        )
    return rows


def _trim_fraction(stamp: str) -> str:
    # Azure writes 7 fractional digits; keep microseconds so any Python parses it.
    head, dot, frac = stamp.partition(".")
    return f"{head}.{frac[:6]}" if dot else head


def _read_mooncake(path: Path) -> list[tuple[float, float, float]]:
    rows: list[tuple[float, float, float]] = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{n}: invalid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise InvalidInput(f"{path}:{n}: expected a JSON object per line")
        for key in ("timestamp", "input_length", "output_length"):
            if key not in rec:
                raise InvalidInput(f"{path}:{n}: missing field {key!r}")
        rows.append(
            (
                _count(path, n, "timestamp", rec["timestamp"]) / 1000.0,
                _count(path, n, "input_length", rec["input_length"]),
                _count(path, n, "output_length", rec["output_length"]),
            )
        )
    return rows


def read_jobs_trace(path: Path) -> JobsTrace:
    """Parse an Alibaba openb pod list; pods without GPUs are skipped.

    Fractional-GPU pods (``gpu_milli`` < 1000) count as one GPU. A pod's lifetime runs from
    ``scheduled_time`` (or ``creation_time`` if it never was scheduled) to
    ``deletion_time``; pods with no positive lifetime are skipped.
    """
    rows: list[tuple[float, float, float]] = []
    header: list[str] | None = None
    for n, line in _lines(path):
        if not line.strip():
            continue
        cells = next(csv.reader([line]))
        if header is None:
            header = [c.strip() for c in cells]
            missing = [c for c in _ALIBABA_COLUMNS if c not in header]
            if missing:
                raise InvalidInput(
                    f"{path}:{n}: not an Alibaba openb pod list: missing columns "
                    f"{', '.join(missing)}"
                )
            at = {c: header.index(c) for c in _ALIBABA_COLUMNS}
            continue
        if len(cells) != len(header):
            raise InvalidInput(f"{path}:{n}: expected {len(header)} fields, got {len(cells)}")
        gpus = _count(path, n, "num_gpu", cells[at["num_gpu"]].strip())
        if gpus == 0:
            continue
        created = _count(path, n, "creation_time", cells[at["creation_time"]].strip())
        deleted = _count(path, n, "deletion_time", cells[at["deletion_time"]].strip())
        sched_raw = cells[at["scheduled_time"]].strip()
        start = _count(path, n, "scheduled_time", sched_raw) if sched_raw else created
        if deleted > start:
            rows.append((created, gpus, deleted - start))
    if not rows:
        raise InvalidInput(f"{path}: no GPU pods with a positive lifetime")
    arr = np.array(rows, dtype=np.float64)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return JobsTrace(
        source=path.name,
        arrival_s=arr[:, 0] - arr[0, 0],
        gpus=arr[:, 1].astype(np.int64),
        duration_s=arr[:, 2],
    )
