"""``suanli demo``: the national picture, then one market round on the built-in fleet.

Until the exchange service exists this is the README's main job: the catalogue summary,
then a generated national-style round cleared by every policy side by side.
"""

from __future__ import annotations

from typing import Annotated

import typer

from suanli.cli._output import console
from suanli.cli.catalog_cmd import DEFAULT_FLEET, show_summary

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``suanli demo`` to ``app``."""
    app.command("demo")(demo)


def demo(
    fleet_name: Annotated[
        str, typer.Option("--fleet", help="Built-in fleet to show.")
    ] = DEFAULT_FLEET,
    size: Annotated[
        str, typer.Option("--size", help="Market round to clear: small, medium or national.")
    ] = "medium",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show the national picture and clear one market round with every policy."""
    show_summary(fleet_name, as_json=as_json)
    if as_json:
        return
    from suanli.cli.bench_cmd import clearing

    console.print(
        "\n[bold]One clearing round[/] on the china-2025 fleet: the exchange against the "
        "status quo (local markets), a price-taking broker (cheapest) and a price-blind one "
        "(nearest); lp-bound is the welfare upper bound."
    )
    clearing(
        size=size,
        seed=1,
        policies="exchange,local,cheapest,nearest,lp-bound",
        milp_time_limit_s=60.0,
        as_json=False,
    )
