"""CSV rows with typed accessors that fail with ``file:line`` (used by ``_load``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from suanli.errors import DataError

__all__ = ["CHINA_LAT", "CHINA_LON", "Row", "read_rows"]

# Mainland China, generously: every shipped coordinate must fall inside.
CHINA_LAT = (18.0, 54.0)
CHINA_LON = (73.0, 135.0)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row with typed accessors that fail with ``file:line``."""

    file: str
    line: int
    values: Mapping[str, str]

    def fail(self, message: str) -> NoReturn:
        raise DataError(f"{self.file}:{self.line}: {message}")

    def text(self, col: str) -> str:
        value = self.values[col].strip()
        if not value:
            self.fail(f"column {col!r} is empty")
        return value

    def names(self, col: str) -> tuple[str, ...]:
        """A ``|``-separated list; empty cell → empty tuple."""
        return tuple(n.strip() for n in self.values[col].split("|") if n.strip())

    def number(self, col: str) -> float:
        """A finite number > 0 (every catalogue quantity is positive)."""
        raw = self.text(col)
        try:
            value = float(raw)
        except ValueError:
            self.fail(f"column {col!r}: expected a number, got {raw!r}")
        if not math.isfinite(value) or value <= 0:
            self.fail(f"column {col!r}: expected a positive number, got {raw!r}")
        return value

    def optional_number(self, col: str) -> float | None:
        return self.number(col) if self.values[col].strip() else None

    def integer(self, col: str) -> int:
        raw = self.text(col)
        if not raw.isdigit() or int(raw) <= 0:
            self.fail(f"column {col!r}: expected a positive integer, got {raw!r}")
        return int(raw)

    def flag(self, col: str) -> bool:
        raw = self.text(col).lower()
        if raw not in ("true", "false"):
            self.fail(f"column {col!r}: expected true or false, got {raw!r}")
        return raw == "true"

    def choice(self, col: str, enum: Callable[[str], T]) -> T:
        raw = self.text(col)
        try:
            return enum(raw.lower())
        except ValueError:
            self.fail(f"column {col!r}: unknown value {raw!r}")

    def coordinates(self) -> tuple[float, float]:
        lat, lon = self.number("lat"), self.number("lon")
        if not (CHINA_LAT[0] <= lat <= CHINA_LAT[1] and CHINA_LON[0] <= lon <= CHINA_LON[1]):
            self.fail(f"coordinates ({lat}, {lon}) are outside China")
        return lat, lon


def read_rows(texts: Mapping[str, str], file: str, header: tuple[str, ...]) -> Iterator[Row]:
    """The non-blank data rows of ``texts[file]``, whose first line must equal ``header``."""
    if file not in texts:
        raise DataError(f"{file}: missing catalogue file")
    reader = csv.reader(texts[file].splitlines())
    expected = header
    first = next(reader, None)
    if first is None or tuple(h.strip() for h in first) != expected:
        raise DataError(f"{file}:1: header must be {','.join(expected)}")
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue  # blank lines are allowed
        row = Row(file, reader.line_num, dict(zip(expected, cells, strict=False)))
        if len(cells) != len(expected):
            row.fail(f"expected {len(expected)} columns, got {len(cells)}")
        yield row
