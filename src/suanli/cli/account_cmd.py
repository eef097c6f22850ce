"""``suanli login``, ``suanli whoami``, ``suanli tenants create``, ``suanli deposit``,
``suanli tokens list|create|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer

from suanli.cli._exchange import client, fen_to_yuan, yuan_to_fen
from suanli.cli._output import console, print_json, print_table
from suanli.errors import InvalidInput

__all__ = ["register"]

tenants_app = typer.Typer(help="Tenants and their accounts (operators).", no_args_is_help=True)
tokens_app = typer.Typer(
    help="Your account's API tokens: list, create (optionally expiring), revoke.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("whoami")(whoami)
    app.command("deposit")(deposit)
    app.command("wallet")(wallet)
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(tokens_app, name="tokens")


def login(
    url: Annotated[
        str, typer.Option("--url", help="The exchange's address.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option("--token", help="An API token (asked for if absent).")
    ] = None,
) -> None:
    """Check a token against the exchange and save it for the other commands."""
    from suanli.sdk import Client, save_config

    if token is None:
        token = typer.prompt("token", hide_input=True)
    with Client(url, token, retries=0) as c:
        me = c.me()
    path = save_config(url, token)
    console.print(
        f"logged in to {url} as {me['account_name']} ({me['role']}) of {me['tenant_name']} "
        f"[{me['tenant_id']}]; saved to {path}",
        highlight=False,
    )


def whoami(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The account, tenant and role of the saved login."""
    with client() as c:
        me = c.me()
    if as_json:
        print_json(me)
        return
    print_table([me], ["account_name", "role", "tenant_name", "tenant_id", "account_id"])


def wallet(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Operators: whose wallet.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Balances in yuan: wallet, held for placed work, earned (sellers), voucher grants."""
    with client() as c:
        w = c.wallet(tenant)
    if as_json:
        print_json(w)
        return
    print_table(
        [
            {
                "tenant": w["tenant_id"],
                "wallet": fen_to_yuan(w["wallet_fen"]),
                "held": fen_to_yuan(w["escrow_fen"]),
                "earned": fen_to_yuan(w["receivable_fen"]),
            }
        ],
        ["tenant", "wallet", "held", "earned"],
        headers={"wallet": "wallet yuan", "held": "held yuan", "earned": "earned yuan"},
    )
    if w["grants"]:
        print_table(
            [
                {
                    "program": g["program_id"],
                    "granted": fen_to_yuan(g["granted_fen"]),
                    "left": fen_to_yuan(g["balance_fen"]),
                }
                for g in w["grants"]
            ],
            ["program", "granted", "left"],
            title="voucher grants (yuan)",
        )


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    buyer: Annotated[
        list[str] | None, typer.Option("--buyer", help="A buyer account name.")
    ] = None,
    seller: Annotated[list[str] | None, typer.Option("--seller", help="A seller account.")] = None,
    operator: Annotated[
        list[str] | None, typer.Option("--operator", help="An operator account.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a tenant with accounts; each account's token is printed once."""
    accounts = (
        [{"name": n, "role": "buyer"} for n in buyer or []]
        + [{"name": n, "role": "seller"} for n in seller or []]
        + [{"name": n, "role": "operator"} for n in operator or []]
    )
    if not accounts:
        raise InvalidInput(
            "give at least one account: --buyer NAME, --seller NAME or --operator NAME"
        )
    with client() as c:
        t = c.create_tenant(name, accounts)
    if as_json:
        print_json(t)
        return
    console.print(f"tenant {t['name']} [{t['id']}] — tokens are shown once:", highlight=False)
    print_table(t["accounts"], ["name", "role", "id", "token"])


@tenants_app.command("list")
def list_tenants(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every tenant (operators)."""
    with client() as c:
        rows = c.tenants()
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "name", "created_at"])


def deposit(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    amount_cny: Annotated[float, typer.Option("--amount-cny", help="Yuan to credit.")],
    memo: Annotated[str, typer.Option("--memo")] = "",
) -> None:
    """Credit a buyer's wallet (operators record money received)."""
    with client() as c:
        w = c.deposit(tenant, yuan_to_fen(amount_cny, "--amount-cny"), memo)
    console.print(f"{tenant}: wallet now {w['wallet_fen'] / 100:,.2f} yuan", highlight=False)


@tokens_app.command("list")
def list_tokens(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Your account's live tokens; ``current`` marks the one this login uses."""
    with client() as c:
        rows = c.tokens()
    if as_json:
        print_json(rows)
        return
    print_table(
        [{**t, "current": "yes" if t["current"] else ""} for t in rows],
        ["id", "label", "prefix", "created_at", "expires_at", "current"],
        headers={"prefix": "starts with"},
    )


@tokens_app.command("create")
def create_token(
    label: Annotated[str | None, typer.Option("--label", help="What it is for.")] = None,
    expires_in_days: Annotated[
        int | None,
        typer.Option("--expires-in-days", min=1, max=3650, help="Stops working after this."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new token for your account, printed once (store it now)."""
    with client() as c:
        t = c.create_token(label, expires_in_days)
    if as_json:
        print_json(t)
        return
    until = f", expires {t['expires_at']}" if t.get("expires_at") else ", does not expire"
    console.print(f"token {t['id']}{until} — shown once:", highlight=False)
    console.print(t["token"], highlight=False, soft_wrap=True)


@tokens_app.command("revoke")
def revoke_token(token_id: Annotated[str, typer.Argument(help="Token id (tok-…).")]) -> None:
    """Revoke one of your account's tokens: refused from the next request on."""
    with client() as c:
        c.revoke_token(token_id)
    console.print(f"token {token_id} revoked", highlight=False)
