"""``suanli catalog …`` and ``suanli demo`` as a user runs them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from suanli.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_gpus_table_lists_h800(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "catalog", "gpus")
    assert code == 0
    assert "H800" in out and "Accelerators" in out


def test_gpus_json(capsys: pytest.CaptureFixture[str]) -> None:
    gpus = {g["name"]: g for g in _json(capsys, "catalog", "gpus")}
    assert len(gpus) == 12
    assert gpus["H800"]["interconnect_gbps"] == 400
    assert gpus["A100-80G"]["fp8_tflops"] is None
    assert gpus["Ascend 910C"]["estimate"] is True
    assert gpus["MLU370-X8"]["vendor"] == "cambricon"


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    models = {m["name"]: m for m in _json(capsys, "catalog", "models")}
    assert models["DeepSeek-R1"]["kv_elems_per_token_per_layer"] == 576


def test_hubs_json_nests_clusters(capsys: pytest.CaptureFixture[str]) -> None:
    hubs = _json(capsys, "catalog", "hubs")
    assert len(hubs) == 8
    assert sum(len(h["clusters"]) for h in hubs) == 10  # 2 + 2 + 6 × 1


def test_cities_json_largest_first(capsys: pytest.CaptureFixture[str]) -> None:
    cities = _json(capsys, "catalog", "cities")
    assert len(cities) >= 30
    weights = [c["demand_weight"] for c in cities]
    assert weights == sorted(weights, reverse=True)


@pytest.mark.parametrize("sub", ["models", "hubs", "clusters", "cities", "power"])
def test_every_table_renders(capsys: pytest.CaptureFixture[str], sub: str) -> None:
    code, out, _ = _run(capsys, "catalog", sub)
    assert code == 0 and out.count("\n") > 5


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "catalog", "nope")
    assert code == 2
    assert "nope" in err


def test_sites_of_unknown_hub_lists_valid_hubs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "catalog", "sites", "--hub", "nope")
    assert code == 2
    assert "unknown hub 'nope'" in err and "gansu" in err and "jingjinji" in err
    assert "Traceback" not in out + err


def test_sites_filtered_by_hub_and_limited(capsys: pytest.CaptureFixture[str]) -> None:
    sites = _json(capsys, "catalog", "sites", "--hub", "甘肃", "--limit", "3")
    assert 0 < len(sites) <= 3
    assert all(s["hub_id"] == "gansu" and s["gpus"] > 0 for s in sites)


def test_sites_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "catalog", "sites", "--limit", "2")
    assert code == 0 and "Sites of fleet 'china-2025': 2 of" in out


def test_negative_limit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, "catalog", "sites", "--limit", "-1")
    assert code == 2


def test_unknown_fleet_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "catalog", "sites", "--fleet", "atlantis")
    assert code == 2 and "unknown fleet" in err


def test_summary_breakdowns_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    s = _json(capsys, "catalog", "summary")
    assert s["gpus"] > 0 and (s["hubs"], s["clusters"]) == (8, 10)
    for breakdown in ("gpus_by_model", "gpus_by_hub", "gpus_by_region"):
        assert sum(s[breakdown].values()) == s["gpus"], breakdown


@pytest.mark.slow  # the whole demo: ~5 s
def test_demo_prints_the_national_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "demo")
    assert code == 0
    assert "GPUs in" in out and "By hub" in out and "Catalogue: 8 hubs" in out
