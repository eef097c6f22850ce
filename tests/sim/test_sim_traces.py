"""Trace parsers: the formats are told by content; malformed lines are named."""

from __future__ import annotations

import shutil
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from suanli.errors import InvalidInput
from suanli.sim.traces import detect_inference_format, read_inference_trace, read_jobs_trace


def test_azure_csv(data_dir: Path) -> None:
    t = read_inference_trace(data_dir / "azure_small.csv")
    assert t.format == "azure"
    # 18:15:46.68059 → 0 s, 18:15:50.995169 → 4.314579 s, 18:15:52 → 5.31941 s, +60 s
    assert t.arrival_s.tolist() == pytest.approx([0.0, 4.314579, 5.31941, 60.0])
    assert t.prompt_tokens.tolist() == [374, 396, 1000, 230]
    assert t.output_tokens.tolist() == [44, 109, 20, 7]
    assert t.duration_s == pytest.approx(60.0)


def test_mooncake_jsonl(data_dir: Path) -> None:
    t = read_inference_trace(data_dir / "mooncake_small.jsonl")
    assert t.format == "mooncake"
    assert t.arrival_s.tolist() == [0.0, 0.5, 2.0]  # timestamps are milliseconds
    assert t.prompt_tokens.tolist() == [40160, 1000, 8000]
    assert t.output_tokens.tolist() == [6, 300, 94]


def test_format_is_told_by_content_not_name(data_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "trace.jsonl"
    shutil.copy(data_dir / "azure_small.csv", odd)
    assert detect_inference_format(odd) == "azure"
    odd2 = tmp_path / "trace.csv"
    shutil.copy(data_dir / "mooncake_small.jsonl", odd2)
    assert detect_inference_format(odd2) == "mooncake"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("azure_bad_tokens.csv", r"azure_bad_tokens\.csv:3: ContextTokens must be a number"),
        ("azure_bad_time.csv", r"azure_bad_time\.csv:3: TIMESTAMP 'yesterday'"),
        ("mooncake_bad_json.jsonl", r"mooncake_bad_json\.jsonl:2: invalid JSON"),
        ("mooncake_missing.jsonl", r"mooncake_missing\.jsonl:2: missing field 'input_length'"),
        ("alibaba_small.csv", r"alibaba_small\.csv:1: not an inference trace"),
    ],
)
def test_malformed_inference_traces_name_the_line(data_dir: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_inference_trace(data_dir / name)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="empty file"):
        read_inference_trace(empty)
    with pytest.raises(InvalidInput, match="no such file"):
        read_inference_trace(tmp_path / "absent.csv")
    with pytest.raises(InvalidInput, match="no such file"):
        read_jobs_trace(tmp_path / "absent.csv")


def test_alibaba_pod_list(data_dir: Path) -> None:
    t = read_jobs_trace(data_dir / "alibaba_small.csv")
    # pod 0001 has no GPU and pod 0004 lives 0 s: skipped. Pod 0002 asks 460 milli-GPU → 1
    # GPU; pod 0003 was never scheduled, so its life runs from creation (5000 → 5400 s).
    assert t.arrival_s.tolist() == [0.0, 3600.0, 5000.0]
    assert t.gpus.tolist() == [1, 1, 8]
    assert t.duration_s.tolist() == [7200.0, 7200.0, 400.0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("alibaba_bad.csv", r"alibaba_bad\.csv:3: num_gpu must be a number, got 'two'"),
        (
            "alibaba_missing_columns.csv",
            r"alibaba_missing_columns\.csv:1: not an Alibaba openb pod list: missing columns "
            r"deletion_time, scheduled_time",
        ),
    ],
)
def test_malformed_jobs_traces_name_the_line(data_dir: Path, name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_jobs_trace(data_dir / name)


@pytest.mark.parametrize(
    ("profile", "file"),
    [
        ("code", "azure_llm_2023_code.csv"),
        ("conversation", "azure_llm_2023_conv.csv"),
        ("long-context", "mooncake_synthetic_trace.jsonl"),
    ],
)
def test_committed_fit_matches_the_public_traces(
    shared_traces: Path, profile: str, file: str
) -> None:
    fit_text = resources.files("suanli.workload").joinpath("data/inference_fit.toml").read_text()
    fit = tomllib.loads(fit_text)["profiles"][profile]
    t = read_inference_trace(shared_traces / file)
    assert fit["requests"] == len(t.arrival_s)
    assert fit["prompt_mean"] == pytest.approx(float(np.mean(t.prompt_tokens)), abs=0.06)
    assert fit["output_mean"] == pytest.approx(float(np.mean(t.output_tokens)), abs=0.06)


def test_the_alibaba_trace_parses(shared_traces: Path) -> None:
    t = read_jobs_trace(shared_traces / "alibaba_openb_pod_list_default.csv")
    assert len(t.gpus) > 5000
    assert set(np.unique(t.gpus).tolist()) <= {1, 2, 4, 8}
