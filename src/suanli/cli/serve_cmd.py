"""Placeholder while the serving work lands (filled in by the serving change)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
