"""Reading measured-RTT CSV files: good rows load, bad ones name the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.errors import DataError, InvalidInput
from suanli.latency import load_measured, parse_measured


def test_shipped_file_is_valid_and_every_row_has_a_source() -> None:
    measured = load_measured()
    for row in measured.rows.values():
        assert row.source
        assert row.rtt_ms > 0


def test_reads_rows_comments_and_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "rtt.csv"
    path.write_text(
        '# a comment with a stray " quote, and a comma\n'
        "from,to,rtt_ms,source\n"
        "Shanghai,Zhongwei,24.5,probe 2025-01\n"
        "\n"
        'Beijing,"Gui\'an",30,"report, table 3"\n',
        encoding="utf-8",
    )
    m = load_measured(path)
    assert len(m) == 2
    row = m.lookup("zhongwei", "SHANGHAI")
    assert row is not None and row.rtt_ms == 24.5 and row.source == "probe 2025-01"
    row = m.lookup("Gui'an", "Beijing")
    assert row is not None and row.source == "report, table 3"


def test_header_only_is_an_empty_matrix(tmp_path: Path) -> None:
    path = tmp_path / "rtt.csv"
    path.write_text("from,to,rtt_ms,source\n", encoding="utf-8")
    assert len(load_measured(path)) == 0


@pytest.mark.parametrize(
    ("body", "error", "line", "message"),
    [
        ("", InvalidInput, None, "empty file"),
        ("a,b,c,d\n", InvalidInput, 1, "header must be"),
        ("from,to,rtt_ms,source\nA,B,fast,s\n", InvalidInput, 2, "not a number"),
        ("from,to,rtt_ms,source\nA,B,-3,s\n", InvalidInput, 2, "positive"),
        ("from,to,rtt_ms,source\nA,B,inf,s\n", InvalidInput, 2, "positive"),
        ("from,to,rtt_ms,source\nA,B,3\n", InvalidInput, 2, "expected 4 fields"),
        ("from,to,rtt_ms,source\nA,B,3,\n", InvalidInput, 2, "needs a source"),
        ("from,to,rtt_ms,source\nA,a,3,s\n", InvalidInput, 2, "itself"),
        ("from,to,rtt_ms,source\n,B,3,s\n", InvalidInput, 2, "place names"),
        # line 4 contradicts line 2 (the same pair, reversed, with another figure)
        ("from,to,rtt_ms,source\nA,B,3,s\n#\nB,A,4,s\n", DataError, 4, "contradicts line 2"),
    ],
)
def test_errors_name_file_and_line(
    tmp_path: Path, body: str, error: type[Exception], line: int | None, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(error, match=message) as info:
        load_measured(path)
    where = str(path) if line is None else f"{path}:{line}:"
    assert where in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        load_measured(tmp_path / "nope.csv")


def test_parse_names_the_given_filename() -> None:
    with pytest.raises(InvalidInput, match=r"^inline:2: "):
        parse_measured("from,to,rtt_ms,source\nA,B,x,s\n", "inline")


def test_rows_remember_where_they_were_read(tmp_path: Path) -> None:
    path = tmp_path / "rtt.csv"
    path.write_text("from,to,rtt_ms,source\n\nA,B,3,s\n", encoding="utf-8")
    row = load_measured(path).lookup("A", "B")
    assert row is not None and row.origin == f"{path}:3"
