"""``suanli demo``: the national picture from the built-in catalogue and fleet.

For now it prints the national catalogue summary; later it starts the exchange.
"""

from __future__ import annotations

import typer

from suanli.cli.catalog_cmd import DEFAULT_FLEET, show_summary

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``suanli demo`` to ``app``."""
    app.command("demo")(demo)


def demo(
    fleet_name: str = typer.Option(DEFAULT_FLEET, "--fleet", help="Built-in fleet to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show the national picture: the built-in fleet's GPUs by model, hub and region."""
    show_summary(fleet_name, as_json=as_json)
