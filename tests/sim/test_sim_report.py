"""Outputs: the JSON summary, CSV time series and a self-contained, well-formed HTML report."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from suanli.sim.outputs import write_outputs
from suanli.sim.scenario import Scenario
from suanli.sim.simulate import SimResult, simulate

VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "source", "wbr"}


class Checker(HTMLParser):
    """Counts tags and fails on anything unbalanced or external."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: dict[str, int] = {}
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen[tag] = self.seen.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href") and value and ("//" in value or value.startswith("http")):
                self.errors.append(f"external reference {name}={value}")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen[tag] = self.seen.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()


@pytest.fixture(scope="module")
def written(tiny: Scenario, tmp_path_factory: pytest.TempPathFactory) -> tuple[SimResult, Path]:
    res = simulate(tiny, ["exchange", "local"], days=0.25)
    out = tmp_path_factory.mktemp("out")
    write_outputs(res, out)
    return res, out


def test_the_report_is_well_formed_offline_html(written: tuple[SimResult, Path]) -> None:
    _, out = written
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []  # every element closed
    assert checker.seen.get("script", 0) == 0  # no JavaScript
    # charts: overall utilization + SLO, then per policy: 2 lines, a map and P&L bars
    assert checker.seen["svg"] == 2 + 2 * 4
    assert checker.seen["circle"] >= 2 * 3  # three sites per map
    assert "Policies side by side" in text and "tiny" in text


def test_the_summary_json_and_the_csvs(written: tuple[SimResult, Path]) -> None:
    res, out = written
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert doc["scenario"] == "tiny" and set(doc["policies"]) == {"exchange", "local"}
    ex = doc["policies"]["exchange"]
    assert ex["utilization"] == pytest.approx(res.results["exchange"].summary["utilization"])
    with (out / "timeseries.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # 0.25 days = 24 rounds of 15 min, × 3 hubs, × 2 policies
    assert len(rows) == 24 * 3 * 2
    assert {r["hub"] for r in rows} == {"yangtze", "ningxia", "gansu"}
    with (out / "rounds.csv").open(encoding="utf-8") as fh:
        rounds = list(csv.DictReader(fh))
    assert len(rounds) == 24 * 2
    assert float(rounds[0]["demand_rps"]) > 0
