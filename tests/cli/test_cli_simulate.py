"""``suanli simulate`` and ``suanli bench simulate`` as a user runs them (tiny scenarios)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "sim" / "data"
TINY = str(DATA / "tiny.toml")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_table_side_by_side_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(
        capsys,
        "simulate",
        TINY,
        "--policies",
        "local,exchange",
        "--days",
        "0.25",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    for metric in (
        "GPU utilization",
        "inference SLO attainment",
        "seller revenue",
        "buyer cost",
        "voucher spend",
        "energy (MWh)",
        "price Yangtze River Delta",
    ):
        assert metric in out
    assert "local" in out and "exchange" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["report.html", "rounds.csv", "summary.json", "timeseries.csv"]


def test_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "simulate", TINY, "--policies", "exchange", "--days", "0.1", "--json", "--seed", "5"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["seed"] == 5 and doc["days"] == pytest.approx(0.1)
    assert set(doc["policies"]) == {"exchange"}


def test_compare_two_variants(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bigger = tmp_path / "bigger.toml"
    bigger.write_text(
        f'extends = "{TINY}"\nname = "tiny-plus"\n[[fleet.add_pools]]\nsite = "qy-01"\n'
        'gpu = "H20"\ngpus = 512\nreserve_cny_per_gpu_hour = 2.5\ncapex_cny_per_gpu_hour = 3\n',
        encoding="utf-8",
    )
    code, out, err = _run(
        capsys, "simulate", "--compare", TINY, str(bigger), "--days", "0.1", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert "tiny · exchange" in out and "tiny-plus · exchange" in out
    assert (tmp_path / "compare.json").exists()
    doc = json.loads((tmp_path / "compare.json").read_text(encoding="utf-8"))
    gpus = [doc[k]["fleet"]["gpus"] for k in ("tiny", "tiny-plus")]
    assert gpus[1] == gpus[0] + 512


def test_trace_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        "simulate",
        TINY,
        "--policies",
        "exchange",
        "--days",
        "0.1",
        "--inference-trace",
        str(DATA / "mooncake_small.jsonl"),
        "--jobs-trace",
        str(DATA / "alibaba_small.csv"),
    )
    assert code == 0, err
    assert "token profile of every service from mooncake_small.jsonl" in out
    assert "batch jobs replayed from alibaba_small.csv" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "china-2024"], "unknown scenario 'china-2024'"),
        (["simulate", TINY, "--policies", "lp-bound"], "unknown policy 'lp-bound'"),
        (["simulate", "--compare", TINY], "--compare needs two scenarios"),
        (["simulate"], "give one scenario"),
        (
            ["simulate", TINY, "--inference-trace", str(DATA / "azure_bad_tokens.csv")],
            "azure_bad_tokens.csv:3: ContextTokens must be a number",
        ),
        (
            ["simulate", TINY, "--jobs-trace", str(DATA / "alibaba_bad.csv")],
            "alibaba_bad.csv:3: num_gpu must be a number",
        ),
        (["simulate", TINY, "--days", "0"], "days must be in (0, 366]"),
    ],
)
def test_mistakes_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_list_builtin_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "simulate", "--list")
    assert code == 0
    for name in ("china-2025", "deepseek-shift", "vouchers", "outage"):
        assert name in out


def test_bench_simulate_reports_time_and_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        "bench",
        "simulate",
        "--scenario",
        TINY,
        "--days",
        "0.05",
        "--policies",
        "exchange,local",
        "--json",
    )
    assert code == 0, err
    rows = {r["policy"]: r for r in json.loads(out)["rows"]}
    assert set(rows) == {"exchange", "local"}
    ex = rows["exchange"]
    assert ex["rounds"] == 5  # 0.05 days = 72 min = 4.8 rounds of 15 min → rounds at 0…60 min
    assert ex["peak_rss_mb"] > 10
    assert ex["wall_ms_per_round"] == pytest.approx(1000 * ex["wall_s"] / 5)
    assert ex["wall_vs_exchange"] == pytest.approx(1.0)
