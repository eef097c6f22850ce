"""``suanli latency``: RTT to a site, cluster or hub, the hub table, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def squash(text: str) -> str:
    return "".join(text.split())


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("to", "kind", "to_id", "expected_ms"),
    [
        # Zhongwei cluster 37.51N 105.19E, 1,646 km from Shanghai: 2·1646·1.5/200 + 2 = 26.7
        ("Zhongwei", "cluster", "zhongwei", 26.69),
        # the Chinese name resolves to the same cluster
        ("中卫", "cluster", "zhongwei", 26.69),
        # Ningxia hub sits at the Zhongwei cluster: the same 26.7 ms
        ("ningxia", "hub", "ningxia", 26.69),
    ],
)
def test_rtt_to_cluster_and_hub(
    capsys: pytest.CaptureFixture[str], to: str, kind: str, to_id: str, expected_ms: float
) -> None:
    data = run_json(["latency", "--from", "Shanghai", "--to", to], capsys)
    assert data["to_kind"] == kind
    assert data["to_id"] == to_id
    assert data["method"] == "model"
    assert data["rtt_ms"] == pytest.approx(expected_ms, abs=0.01)
    assert data["distance_km"] == pytest.approx(1646.2, abs=0.1)
    assert data["latency_circle_ms"] is None  # network part 24.7 ms > 20 ms


def test_rtt_to_a_fleet_site_by_id_and_name(capsys: pytest.CaptureFixture[str]) -> None:
    by_id = run_json(["latency", "--from", "Shanghai", "--to", "qingyang-03"], capsys)
    assert by_id["to_kind"] == "site"
    by_name = run_json(["latency", "--from", "Shanghai", "--to", by_id["to"]], capsys)
    assert by_name["to_id"] == "qingyang-03"
    # a Qingyang site sits within the cluster's jitter of 35.71N 107.64E, ≈ 1,375 km from
    # Shanghai: 2·1375·1.5/200 + 2 ≈ 22.6 ms give or take a few tenths
    assert by_id["rtt_ms"] == pytest.approx(22.6, abs=1.0)


def test_inflation_changes_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        ["latency", "--from", "Shanghai", "--to", "Zhongwei", "--inflation", "1"], capsys
    )
    # 2·1646.2·1/200 + 2 = 16.46 + 2 = 18.46 ms
    assert data["rtt_ms"] == pytest.approx(18.46, abs=0.01)
    assert data["route_inflation"] == 1.0


def test_human_output_shows_the_derivation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["latency", "--from", "Shanghai", "--to", "Zhongwei"], capsys)
    assert code == 0
    assert "RTT: 26.7 ms (model)" in out
    assert "1,646 km × 1.5 route / 200 km/ms × 2 + 2.0 ms access = 26.7 ms" in out
    assert "latency circle: >20 ms" in out


def test_measured_file_overrides_with_catalogue_aliases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rtt.csv"
    # "宁夏" is the Ningxia hub; written either way round, the row applies both ways.
    path.write_text("from,to,rtt_ms,source\n宁夏,shanghai,31.5,probe campaign X\n", "utf-8")
    data = run_json(
        ["latency", "--from", "Shanghai", "--to", "ningxia", "--measured", str(path)], capsys
    )
    assert data["method"] == "measured"
    assert data["rtt_ms"] == 31.5
    assert data["source"] == "probe campaign X"
    # the Zhongwei cluster is another place: still the model's 26.7 ms
    other = run_json(
        ["latency", "--from", "Shanghai", "--to", "zhongwei", "--measured", str(path)], capsys
    )
    assert other["method"] == "model"
    code, out, _ = run(
        ["latency", "--from", "Shanghai", "--to", "ningxia", "--measured", str(path)], capsys
    )
    assert code == 0 and "source: probe campaign X" in out


def test_all_hubs_sorted_with_circles(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["latency", "--from", "Chengdu", "--all-hubs"], capsys)
    hubs = data["hubs"]
    assert len(hubs) == 8
    rtts = [h["rtt_ms"] for h in hubs]
    assert rtts == sorted(rtts)
    # nearest: the Chengdu-Chongqing hub at the Tianfu cluster, ≈ 19 km away:
    # 2·19·1.5/200 + 2 ≈ 2.3 ms, network part 0.3 ms → inside the 1 ms circle
    assert hubs[0]["hub_id"] == "chengyu"
    assert hubs[0]["latency_circle_ms"] == 1.0
    # Guizhou (Gui'an), ≈ 519 km: network part 2·519·1.5/200 ≈ 7.8 ms → the 20 ms circle
    guizhou = next(h for h in hubs if h["hub_id"] == "guizhou")
    assert guizhou["network_rtt_ms"] == pytest.approx(7.78, abs=0.05)
    assert guizhou["latency_circle_ms"] == 20.0
    code, out, _ = run(["latency", "--from", "Chengdu", "--all-hubs"], capsys)
    assert code == 0 and "Guizhou" in out and "≤20 ms hubs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "Shanghai", "--to", "Zhongwie"], "unknown site, cluster or hub 'Zhongwie'"),
        (["--from", "Shangai", "--to", "Zhongwei"], "did you mean: Shanghai"),
        (["--from", "Shanghai", "--to", "Zhongwei", "--inflation", "0.5"], "≥ 1"),
        (["--from", "Shanghai", "--to", "Zhongwei", "--inflation", "nan"], "≥ 1"),
        (["--from", "Shanghai", "--to", "Zhongwei", "--inflation", "fast"], "--inflation"),
        (["--from", "Shanghai"], "exactly one of --to NAME or --all-hubs"),
        (["--from", "Shanghai", "--to", "Zhongwei", "--all-hubs"], "exactly one of"),
        (["--from", "Shanghai", "--all-hubs", "--measured", "/nonexistent.csv"], "not found"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(["latency", *argv], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_unknown_name_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["latency", "--from", "Shanghai", "--to", "Zhongwie"], capsys)
    assert code == 2
    assert "did you mean:" in err and "zhongwei" in err.lower()


def test_bad_measured_row_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rtt.csv"
    path.write_text("from,to,rtt_ms,source\nShanghai,Tainfu,31,probe\n", "utf-8")
    code, _, err = run(
        ["latency", "--from", "Shanghai", "--all-hubs", "--measured", str(path)], capsys
    )
    assert code == 2
    # Rich may fold a long path across lines: compare without whitespace
    assert squash(f"{path}:2:") in squash(err) and "'Tainfu'" in err
    path.write_text("from,to,rtt_ms,source\nShanghai,Tianfu,soon,probe\n", "utf-8")
    code, _, err = run(
        ["latency", "--from", "Shanghai", "--all-hubs", "--measured", str(path)], capsys
    )
    assert code == 2
    assert squash(f"{path}:2:") in squash(err) and "not a number" in err
