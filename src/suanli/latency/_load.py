"""Read a measured-RTT matrix from CSV (the only I/O in ``suanli.latency``).

Format: a header ``from,to,rtt_ms,source`` then one row per measured pair. Lines whose
start with ``#`` are comments. Each pair applies in both directions; a pair
given twice must agree. Every error names the file and the line.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

from suanli.errors import DataError, InvalidInput
from suanli.latency.model import MeasuredMatrix, MeasuredRtt

__all__ = ["MEASURED_COLUMNS", "load_measured", "parse_measured", "shipped_measured_text"]

MEASURED_COLUMNS = ("from", "to", "rtt_ms", "source")


def shipped_measured_text() -> str:
    """The text of the measured-RTT file shipped with suanli."""
    return (
        resources.files("suanli.latency")
        .joinpath("data", "measured_rtt.csv")
        .read_text(encoding="utf-8")
    )


def load_measured(path: Path | str | None = None) -> MeasuredMatrix:
    """Read ``path`` (default: the shipped file) into a :class:`MeasuredMatrix`."""
    if path is None:
        return parse_measured(shipped_measured_text(), "suanli/latency/data/measured_rtt.csv")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"measured RTT file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read measured RTT file {p}: {exc}") from None
    return parse_measured(text, str(p))


def parse_measured(text: str, filename: str) -> MeasuredMatrix:
    """Parse CSV ``text``; ``filename`` is only used in error messages."""
    # Blank out comment lines before parsing, so a stray quote in a comment cannot
    # swallow the rows after it, while line numbers stay those of the file.
    lines = ["" if line.lstrip().startswith("#") else line for line in text.splitlines()]
    reader = csv.reader(lines)
    header: list[str] | None = None
    rows: list[MeasuredRtt] = []
    seen: dict[frozenset[str], tuple[int, float]] = {}
    for fields in reader:
        line_no = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        where = f"{filename}:{line_no}"
        cells = [f.strip() for f in fields]
        if header is None:
            if tuple(c.lower() for c in cells) != MEASURED_COLUMNS:
                raise InvalidInput(
                    f"{where}: header must be {','.join(MEASURED_COLUMNS)}; got {','.join(cells)}"
                )
            header = cells
            continue
        if len(cells) != len(MEASURED_COLUMNS):
            raise InvalidInput(
                f"{where}: expected {len(MEASURED_COLUMNS)} fields "
                f"({','.join(MEASURED_COLUMNS)}), got {len(cells)}"
            )
        src, dst, rtt_text, source = cells
        if not src or not dst:
            raise InvalidInput(f"{where}: 'from' and 'to' must be place names")
        if src.casefold() == dst.casefold():
            raise InvalidInput(f"{where}: RTT from {src!r} to itself")
        try:
            rtt_ms = float(rtt_text)
        except ValueError:
            raise InvalidInput(f"{where}: rtt_ms {rtt_text!r} is not a number") from None
        if not (math.isfinite(rtt_ms) and rtt_ms > 0):
            raise InvalidInput(f"{where}: rtt_ms must be a positive number of ms; got {rtt_text}")
        if not source:
            raise InvalidInput(f"{where}: every measured row needs a source")
        key = frozenset((src.casefold(), dst.casefold()))
        if key in seen and seen[key][1] != rtt_ms:
            first_line, first_rtt = seen[key]
            raise DataError(
                f"{where}: {src}↔{dst} = {rtt_ms} ms contradicts line {first_line} ({first_rtt} ms)"
            )
        seen.setdefault(key, (line_no, rtt_ms))
        rows.append(MeasuredRtt(src, dst, rtt_ms, source, origin=where))
    if header is None:
        raise InvalidInput(f"{filename}: empty file; expected header {','.join(MEASURED_COLUMNS)}")
    return MeasuredMatrix.of(rows)
