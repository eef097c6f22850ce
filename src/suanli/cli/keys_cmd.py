"""``suanli keys create|list|revoke``: inference keys a service's owner gives its users.

Not to be confused with ``suanli tokens`` (your own API tokens for the exchange): an
inference key only calls one service through the gateways, with the limits set here.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suanli.cli._exchange import client
from suanli.cli._output import console, err_console, print_json, print_table
from suanli.cli.serve_cmd import find_service
from suanli.errors import InvalidInput

__all__ = ["register"]

keys_app = typer.Typer(
    help="Inference keys for your services' users: create (shown once), list, revoke.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(
    service: Annotated[str, typer.Option("--service", help="The service's name (or id).")],
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, max=1_000_000, help="Requests per minute.")
    ] = None,
    tokens_per_day: Annotated[
        int | None,
        typer.Option("--tokens-per-day", min=1, max=10**12, help="Input + output tokens a day."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A key for one service's users, printed once.

    Store it now: the exchange keeps only its digest. Without --rpm / --tokens-per-day
    it has no limit.

    Example: suanli keys create --service chat --name app-1 --rpm 600
    """
    with client() as c:
        svc = find_service(c, service)
        k = c.create_key(svc["id"], name, rpm=rpm, tokens_per_day=tokens_per_day)
    if k.get("key") is None:
        raise InvalidInput(
            f"key {k['id']} was created but its answer was lost on the way, and the key is "
            f"shown only once: revoke it (`suanli keys revoke {k['id']}`) and create another"
        )
    if as_json:
        print_json(k)
        return
    err_console.print(
        "[bold yellow]warning:[/] this key is shown once; store it now — it cannot be shown "
        "again (revoke it and create another if it is lost)",
        highlight=False,
    )
    limits = ", ".join(
        f"{v:,} {what}"
        for v, what in ((k["rpm"], "requests/min"), (k["tokens_per_day"], "tokens/day"))
        if v is not None
    )
    console.print(
        f"key {k['id']} ({k['name']}) for service {svc['name']}: {limits or 'no limits'}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(k["key"], highlight=False, markup=False, soft_wrap=True)


def _row(k: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": k["id"],
        "name": k["name"],
        "service": names.get(k["service_id"], k["service_id"]),
        "prefix": k["prefix"],
        "rpm": k["rpm"],
        "tokens_per_day": k["tokens_per_day"],
        "created": k["created_at"][:19],
        "revoked": (k["revoked_at"] or "")[:19] or None,
    }


@keys_app.command("list")
def list_keys(
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service's (name or id).")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Your inference keys (never the keys themselves: ``prefix`` tells them apart).

    Example: suanli keys list --service chat
    """
    with client() as c:
        svc_id = find_service(c, service)["id"] if service else None
        rows = c.list_keys(svc_id, include_revoked=show_all)
        names = {s["id"]: s["name"] for s in c.services(limit=1000)}
    if as_json:
        print_json(rows)
        return
    cols = ["id", "name", "service", "prefix", "rpm", "tokens_per_day", "created"]
    print_table(
        [_row(k, names) for k in rows],
        [*cols, "revoked"] if show_all else cols,
        title="inference keys",
        headers={"prefix": "starts with", "tokens_per_day": "tokens/day"},
    )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key-…).")]) -> None:
    """Revoke a key: the gateways refuse it from now on. Revoking twice is harmless.

    Example: suanli keys revoke key-3f9a0c1d2e4b
    """
    with client() as c:
        c.revoke_key(key_id)
    console.print(
        f"key {key_id} revoked: the gateways refuse it now", highlight=False, markup=False
    )
