"""``suanli usage``: the tokens your services served, per service, key, city or day — a
table, JSON, or CSV to bill your own users with."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from suanli.cli._exchange import client
from suanli.cli._output import console, print_json, print_table
from suanli.cli.serve_cmd import find_service
from suanli.errors import InvalidInput

__all__ = ["register"]


class By(StrEnum):
    SERVICE = "service"
    KEY = "key"
    CITY = "city"
    DAY = "day"


_GROUP_COLUMNS = {
    By.SERVICE: ["service_name", "service_id"],
    By.KEY: ["key_name", "key_id", "service_name"],
    By.CITY: ["city"],
    By.DAY: ["day"],
}
_SUMS = ["requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens", "value_cny"]
_HEADERS = {
    "service_name": "service",
    "service_id": "id",
    "key_name": "key",
    "key_id": "key id",
    "input_tokens": "input (miss)",
    "cached_input_tokens": "input (cached)",
    "output_tokens": "output",
    "value_cny": "at your bids, yuan",
}


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)


def _iso(value: str | None, option: str) -> str | None:
    """``value`` as an ISO 8601 time for the exchange (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r}: give an ISO 8601 date or time, e.g. 2025-03-01 or "
            "2025-03-01T08:00:00+08:00"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def usage(
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service's (name or id).")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this key's (key id).")] = None,
    by: Annotated[By, typer.Option("--by", help="One row per service, key, city or day.")] = (
        By.SERVICE
    ),
    since: Annotated[str | None, typer.Option("--since", help="From (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before (ISO 8601).")] = None,
    csv_to: Annotated[
        str | None, typer.Option("--csv", help="Write CSV to FILE, or '-' for stdout.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tokens your services served, per service, key, city or day (table, JSON or CSV).

    Each token is counted once. "at your bids" prices them at your services' bids, for
    billing your own users (the exchange bills your replicas by GPU-hour).

    Example: suanli usage --service chat --by key --since 2025-03-01 --csv march.csv
    """
    since_at, until_at = _iso(since, "--since"), _iso(until, "--until")
    with client() as c:
        service_id = find_service(c, service)["id"] if service else None
        query = {
            "service_id": service_id,
            "key_id": key,
            "since": since_at,
            "until": until_at,
            "group_by": by.value,
        }
        text = c.token_usage(**query, csv=True) if csv_to is not None else None
        rows = c.token_usage(**query) if text is None else []
    if text is not None:
        if csv_to == "-":
            sys.stdout.write(text)
        else:
            _write(Path(str(csv_to)), text)
            console.print(
                f"wrote {len(text.splitlines()) - 1} rows to {csv_to}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        return
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no token usage in that range", highlight=False, markup=False)
        return
    print_table(rows, [*_GROUP_COLUMNS[by], *_SUMS], title=f"tokens by {by}", headers=_HEADERS)


def _write(path: Path, text: str) -> None:
    try:
        path.write_bytes(text.encode("utf-8"))  # bytes: keep the CSV's CRLF line ends
    except OSError as exc:
        raise InvalidInput(f"--csv {path}: cannot write ({exc.strerror or exc})") from None
