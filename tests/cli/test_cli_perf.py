"""``suanli perf service`` and ``suanli perf validate``: output and clean errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from suanli.catalog import accelerator, load_catalog, model
from suanli.cli.main import main
from suanli.perf import LatencySLO, TokenProfile, load_published_figures, replica_capacity


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and whitespace-normalized stderr of ``suanli ARGV``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_service_json_matches_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["perf", "service", "--model", "llama3.1-8b", "--gpu", "h800"]
    args = ["--prompt-tokens", "1000", "--output-tokens", "1000", "--ttft-ms", "2000"]
    data = run_json([*argv, *args, "--tpot-ms", "20"], capsys)
    cat = load_catalog()
    expected = replica_capacity(
        model(cat, "Llama-3.1-8B"),
        accelerator(cat, "H800"),
        TokenProfile(1000, 1000),
        LatencySLO(2000, 20),
    )
    assert data["model"] == "Llama-3.1-8B" and data["gpu"] == "H800"
    assert data["tp"] == 1
    assert data["binding"] == "tpot"
    assert data["requests_per_s"] == pytest.approx(expected.requests_per_s)
    assert data["batch"] == 112  # tests/perf: 6.823 ms + 116.7 µs · B ≤ 20 ms
    assert data["weights_gb"] == pytest.approx(16.0)  # 8.0e9 · 2 bytes
    assert data["kv_bytes_per_token"] == 131_072  # 2 · 32 · 8 · 128 · 2


def test_service_text_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["perf", "service", "--model", "deepseek-r1", "--gpu", "H800", "--tpot-ms", "50"], capsys
    )
    assert code == 0, err
    assert "DeepSeek-R1 on H800: TP16 (16 GPUs per replica)" in out
    assert "binding:" in out and "req/s per replica" in out
    assert "smallest fitting TP 16" in out


def test_service_does_not_fit_is_an_answer_not_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["perf", "service", "--model", "deepseek-v3", "--gpu", "4090"], capsys)
    assert code == 0
    assert "capacity: 0 req/s (infeasible)" in out
    assert "does_not_fit" in out and "does not fit" in out


def test_service_explicit_tp(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        ["perf", "service", "--model", "llama-70b", "--gpu", "h100", "--tp", "4"], capsys
    )
    assert data["tp"] == 4 and data["gpus"] == 4
    assert data["min_tp"] == 4  # 141.2 GB of BF16 weights: TP2 offers 144 GB, too little KV


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt-tokens", "-3"], "--prompt-tokens must be a positive number, got -3"),
        (["--output-tokens", "0"], "--output-tokens must be a positive number, got 0"),
        (["--ttft-ms", "nan"], "--ttft-ms must be a positive number"),
        (["--tpot-ms", "inf"], "--tpot-ms must be a positive number"),
        (["--tpot-ms", "fast"], "Invalid value for '--tpot-ms'"),
        (["--tp", "3"], "--tp must be one of 1, 2, 4, 8, 16, got 3"),
    ],
)
def test_service_bad_numbers_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, out, err = run(
        ["perf", "service", "--model", "llama-8b", "--gpu", "h100", *extra], capsys
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("--gpu", "H10", "unknown accelerator 'H10'; did you mean: H100"),
        ("--model", "lama-8b", "unknown model 'lama-8b'"),
    ],
)
def test_service_unknown_names_exit_2(
    capsys: pytest.CaptureFixture[str], flag: str, name: str, message: str
) -> None:
    argv = {"--model": "llama-8b", "--gpu": "h100", flag: name}
    code, out, err = run(["perf", "service", *(x for kv in argv.items() for x in kv)], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_validate_json_has_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["perf", "validate"], capsys)
    assert "MBU_DECODE 0.7" in data["constants"]
    rows = data["rows"]
    assert [r["id"] for r in rows] == [f.id for f in load_published_figures()]
    by_id = {r["id"]: r for r in rows}
    decode = by_id["deepseek-decode-node"]
    assert decode["published"] == 14_800
    assert decode["error_pct"] == pytest.approx((decode["predicted"] - 14_800) / 14_800 * 100)


def test_validate_table_lists_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["perf", "validate"], capsys)
    assert code == 0, err
    assert "open-infra-index" in out
    assert "constants: MFU_PREFILL 0.5" in out
    assert "%" in out
