"""``suanli bench clearing``: one generated instance, every asked policy, ratios in one run.

Only the small instance (≈50 pools, 300 jobs, 10 services), so the test stays quick.
"""

from __future__ import annotations

import json

import pytest

from suanli.cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and whitespace-normalized stderr of ``suanli ARGV``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_bench_clearing_small_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "clearing", "--size", "small", "--policies", "exchange,local,lp-bound"]
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["instance"] == "small-seed1"
    assert (data["jobs"], data["services"]) == (300, 10)  # SIZES["small"]
    rows = {r["policy"]: r for r in data["rows"]}
    assert list(rows) == ["exchange", "local", "lp-bound"]
    lp = rows["lp-bound"]
    assert lp["share_of_lp"] == pytest.approx(1.0)
    assert lp["jobs_placed"] is None and lp["gpus_placed"] is None  # a bound, not a placement
    for name in ("exchange", "local"):
        row = rows[name]
        # The LP relaxation over the same candidates bounds every placement's welfare.
        assert 0 <= row["welfare"] <= lp["welfare"] * (1 + 1e-9)
        assert row["share_of_lp"] == pytest.approx(row["welfare"] / lp["welfare"])
        assert row["jobs_placed"] > 0 and row["gpus_placed"] > 0
        assert 0 <= row["demand_served"] <= 1
        assert row["slo_violations"] == 0  # both policies respect TTFT
    # The market beats the status quo of each buyer renting only at home.
    assert rows["exchange"]["welfare"] > rows["local"]["welfare"]
    assert lp["exchange_speedup"] is not None  # measured against the exchange's solve time


def test_bench_rejects_unknown_size_and_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["bench", "clearing", "--size", "huge"], capsys)
    assert code == 2 and "unknown size 'huge'" in err and "small" in err
    code, _, err = run(["bench", "clearing", "--size", "small", "--policies", "greedy"], capsys)
    assert code == 2 and "unknown policy 'greedy'" in err
    assert "Traceback" not in err
