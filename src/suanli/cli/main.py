"""Entry point of the ``suanli`` command.

Sub-commands live in their own modules and are registered here explicitly. Every
:class:`~suanli.errors.SuanliError` becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from suanli import __version__
from suanli.cli._output import err_console
from suanli.errors import SuanliError

app = typer.Typer(
    name="suanli",
    help="suanli (算力): an open compute-power exchange for idle GPU capacity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"suanli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """suanli (算力): pool idle GPUs, place work where it fits, clear a market, settle."""


_registered = False


def _register() -> None:
    """Add every command module's commands to ``app`` (once per process)."""
    global _registered
    if _registered:
        return
    # Explicit registry: each module exposes ``register(app)``.
    from suanli.cli import commands

    for register in commands.REGISTRY:
        register(app)
    _registered = True


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors exit with code 2 and a clear message, never a traceback."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except SuanliError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
