"""``suanli clear``: placements from a snapshot file, and clean errors for bad files.

Fixtures: tests/market/data/market.yaml and market.json (the same small market).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from suanli.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "market" / "data"
GOOD_YAML = (DATA / "market.yaml").read_text(encoding="utf-8")


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


@pytest.mark.parametrize("name", ["market.yaml", "market.json"])
def test_clear_prints_placements(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["clear", str(DATA / name)], capsys)
    assert code == 0, err
    assert "Jobs placed" in out and "Services (1)" in out and "Left unplaced" in out
    assert "policy exchange: welfare" in out
    # cheap-1 bids 3 per ref GPU-hour; the cheapest feasible pool costs more than 8 even
    # with the Shanghai voucher: it is left out for price, whatever the placement.
    unplaced = out[out.index("Left unplaced") :]
    assert "cheap-1" in unplaced and "price: bid 3.00 <" in unplaced
    assert err == ""


@pytest.mark.parametrize("policy", ["exchange", "local", "cheapest", "nearest", "milp"])
def test_clear_json_decision(policy: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["clear", str(DATA / "market.yaml"), "--policy", policy], capsys)
    assert data["policy"] == policy
    assert {"jobs", "services", "unplaced", "prices", "welfare_cny_per_hour"} <= set(data)
    assert [p["pool_id"] for p in data["prices"]] == [
        "qingpu/H100",
        "zhongwei/H20",
        "zhongwei/910B",
    ]
    for row in data["prices"]:
        assert row["price_cny_per_gpu_hour"] >= row["reserve_cny_per_gpu_hour"]
    placed = {p["job_id"] for p in data["jobs"]}
    left = {u["item_id"] for u in data["unplaced"] if u["kind"] == "job"}
    assert placed | left == {"train-1", "finetune-1", "cheap-1"} and not placed & left
    assert "cheap-1" in left
    for p in data["jobs"]:
        pay = p["payment"]
        assert pay["buyer_fen"] + pay["voucher_fen"] == pay["seller_fen"] + pay["fee_fen"]
    (cheap,) = [u for u in data["unplaced"] if u["item_id"] == "cheap-1"]
    assert cheap["reasons"][-1]["code"] == ("locality" if policy == "local" else "price")


def test_clear_lp_bound_places_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["clear", str(DATA / "market.json"), "-p", "lp-bound"], capsys)
    assert data["jobs"] == [] and data["welfare_cny_per_hour"] > 0
    assert data["upper_bound_cny_per_hour"] == data["welfare_cny_per_hour"]


def test_clear_limit_cuts_rows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["clear", str(DATA / "market.yaml"), "--limit", "1"], capsys)
    assert code == 0
    unplaced = out[out.index("Left unplaced") :]
    assert "Left unplaced (2)" in unplaced
    assert unplaced.count(" job ") == 1  # one row of two


def _break(old: str, new: str) -> str:
    assert old in GOOD_YAML, old
    return GOOD_YAML.replace(old, new, 1)


# (case, file name, file text or None for a missing file, words the error must contain)
BAD: list[tuple[str, str, str | None, list[str]]] = [
    ("bad YAML syntax", "m.yaml", GOOD_YAML + "jobs: [ {id: x\n", ["invalid YAML", "m.yaml:"]),
    ("bad JSON syntax", "m.json", '{"pools": [}', ["invalid JSON", "m.json:1:"]),
    (
        "unknown field",
        "m.yaml",
        _break(" gpus: 16, work", " gpus: 16, gpu_type: H100, work"),
        ["jobs.0.gpu_type", "Extra inputs are not permitted"],
    ),
    (
        "negative gpus",
        "m.yaml",
        _break(" gpus: 16, work", " gpus: -16, work"),
        ["jobs.0.gpus", "greater than 0"],
    ),
    (
        "unknown city, with a suggestion",
        "m.yaml",
        _break("origin_city: Beijing", "origin_city: Bejing"),
        ["unknown city 'Bejing'", "did you mean", "Beijing"],
    ),
    (
        "unknown GPU",
        "m.yaml",
        _break("gpu: h20,", "gpu: h2O,"),
        ["unknown accelerator 'h2O'", "H20"],
    ),
    (
        "duplicate ids",
        "m.yaml",
        _break("id: finetune-1,", "id: train-1,"),
        ["duplicate id 'train-1'"],
    ),
    ("missing file", "absent.yaml", None, ["no such file"]),
]


@pytest.mark.parametrize(("name", "text", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_bad_file_exits_2_with_a_message(
    tmp_path: Path,
    name: str,
    text: str | None,
    words: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    code, out, err = run(["clear", str(path)], capsys)
    assert code == 2
    assert err.startswith("error:"), err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err + out
    assert out == ""


def test_unknown_policy_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["clear", str(DATA / "market.yaml"), "--policy", "fastest"], capsys)
    assert code == 2
    assert "unknown policy 'fastest'" in err and "exchange" in err
    assert "Traceback" not in err


def test_clear_reads_token_bids_and_replica_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A warm replica the owner asks for, where 0.01 req/s would not pay for one.
    warm = (
        "  - {id: docs, buyer: lab, model: llama3.1-8b, demand_rps: {Beijing: 0.01},\n"
        "     prompt_tokens: 12000, output_tokens: 343, ttft_ms: 10000, tpot_ms: 50,\n"
        "     bid_cny_per_m_input_tokens: 2, bid_cny_per_m_cached_input_tokens: 0.5,\n"
        "     cached_fraction: 0.563, bid_cny_per_m_output_tokens: 8, min_replicas: 1}\n"
    )
    path = tmp_path / "warm.yaml"
    path.write_text(GOOD_YAML.replace("vouchers:\n", warm + "vouchers:\n"), encoding="utf-8")
    code, out, err = run(["clear", str(path)], capsys)
    assert code == 0, err
    assert "Services (2)" in out
    data = run_json(["clear", str(path)], capsys)
    (docs,) = [s for s in data["services"] if s["service_id"] == "docs"]
    assert [r["required"] for r in docs["replicas"]] == [1]
