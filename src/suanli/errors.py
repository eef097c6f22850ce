"""The one exception root of suanli.

Hierarchy::

    SuanliError                     anything suanli raises on purpose
    ├── InvalidInput                a value the user gave is wrong (bad number, malformed file)
    │   └── UnknownName             a name that is not in the catalogue; carries close matches
    └── DataError                   a shipped or loaded data file is inconsistent

Expected outcomes (a pool rejected by a filter, a job left unplaced) are values, not
exceptions. Exceptions become CLI messages (exit code 2) or HTTP problem documents only
at the edges.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["DataError", "InvalidInput", "SuanliError", "UnknownName"]


class SuanliError(Exception):
    """Root of every error suanli raises on purpose."""


class InvalidInput(SuanliError):
    """A value given by the user is wrong; the message says what and how to fix it."""


class UnknownName(InvalidInput):
    """A name that is not known; the message lists the nearest valid names."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        self.suggestions = nearest_names(name, self.valid)
        hint = (
            f"did you mean: {', '.join(self.suggestions)}?"
            if self.suggestions
            else f"valid names: {', '.join(self.valid[:12])}{' …' if len(self.valid) > 12 else ''}"
        )
        super().__init__(f"unknown {kind} {name!r}; {hint}")


class DataError(SuanliError):
    """A data file (shipped or user-supplied) is inconsistent."""


def nearest_names(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` valid names closest to ``name``, case-insensitively."""
    valid_list = list(valid)
    by_lower = {v.lower(): v for v in valid_list}
    lowered = name.lower()
    contains = [v for v in valid_list if lowered and lowered in v.lower()]
    close = difflib.get_close_matches(lowered, list(by_lower), n=n, cutoff=0.5)
    out: list[str] = []
    for candidate in [*contains, *(by_lower[c] for c in close)]:
        if candidate not in out:
            out.append(candidate)
    return out[:n]
