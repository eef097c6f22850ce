"""``suanli market prices|rounds``, ``suanli vouchers …``, ``suanli invoices``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suanli.cli._exchange import client, fen_to_yuan, yuan_to_fen
from suanli.cli._output import console, print_json, print_table

__all__ = ["register"]

market_app = typer.Typer(help="Market prices and clearing rounds.", no_args_is_help=True)
vouchers_app = typer.Typer(help="Compute-voucher programs (算力券).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(market_app, name="market")
    app.add_typer(vouchers_app, name="vouchers")
    app.command("invoices")(invoices)


@market_app.command("prices")
def prices(
    pool: Annotated[str | None, typer.Option("--pool", help="One pool's price history.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 30,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Latest clearing price per pool (dearest first), or one pool's history."""
    with client() as c:
        rows = c.prices(pool, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            "pool_id",
            "gpu",
            "price_cny_per_gpu_hour",
            "reserve_cny_per_gpu_hour",
            "scarcity_rent_cny_per_gpu_hour",
            "gpus_sold",
            "free_gpus_after",
            "round_id",
        ],
        title="market prices (yuan per GPU-hour)",
        headers={
            "pool_id": "pool",
            "price_cny_per_gpu_hour": "price",
            "reserve_cny_per_gpu_hour": "reserve",
            "scarcity_rent_cny_per_gpu_hour": "rent",
            "gpus_sold": "sold",
            "free_gpus_after": "free",
            "round_id": "round",
        },
    )


@market_app.command("rounds")
def rounds(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The latest clearing rounds."""
    with client() as c:
        rows = c.rounds(limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            "id",
            "started_at",
            "pending_jobs",
            "jobs_placed",
            "services_placed",
            "gpus_placed",
            "expired",
            "solve_ms",
        ],
    )


def _voucher_row(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": v["id"],
        "name": v["name"],
        "coverage": v["coverage"],
        "budget": fen_to_yuan(v["budget_fen"]),
        "granted": fen_to_yuan(v["granted_fen"]),
        "unallocated": fen_to_yuan(v["unallocated_fen"]),
        "claim": fen_to_yuan(v["claim_fen"]),
    }


@vouchers_app.command("list")
def list_vouchers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Programs (operators: all; buyers: granted or redeemable)."""
    with client() as c:
        rows = c.vouchers()
    if as_json:
        print_json(rows)
        return
    print_table(
        [_voucher_row(v) for v in rows],
        ["id", "name", "coverage", "budget", "granted", "unallocated", "claim"],
        title="voucher programs (yuan)",
    )


@vouchers_app.command("create")
def create_voucher(
    name: Annotated[str, typer.Option("--name")],
    coverage: Annotated[float, typer.Option("--coverage", help="Share of spend paid, in (0, 1).")],
    budget_cny: Annotated[float, typer.Option("--budget-cny")],
    per_buyer_cap_cny: Annotated[float | None, typer.Option("--per-buyer-cap-cny")] = None,
    claim_cny: Annotated[
        float | None, typer.Option("--claim-cny", help="Buyers may redeem this much themselves.")
    ] = None,
    province: Annotated[
        list[str] | None, typer.Option("--province", help="Eligible province (repeat).")
    ] = None,
    hub: Annotated[list[str] | None, typer.Option("--hub", help="Eligible hub (repeat).")] = None,
    domestic_only: Annotated[bool, typer.Option("--domestic-only")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create and fund a voucher program (operators)."""
    body: dict[str, Any] = {
        "name": name,
        "coverage": coverage,
        "budget_fen": yuan_to_fen(budget_cny, "--budget-cny"),
        "domestic_gpus_only": domestic_only,
    }
    if per_buyer_cap_cny is not None:
        body["per_buyer_cap_fen"] = yuan_to_fen(per_buyer_cap_cny, "--per-buyer-cap-cny")
    if claim_cny is not None:
        body["claim_fen"] = yuan_to_fen(claim_cny, "--claim-cny")
    if province:
        body["eligible_provinces"] = province
    if hub:
        body["eligible_hubs"] = hub
    with client() as c:
        v = c.create_voucher(**body)
    if as_json:
        print_json(v)
        return
    console.print(f"voucher program {v['id']} ({v['name']}) funded", highlight=False)


@vouchers_app.command("grant")
def grant(
    program: Annotated[str, typer.Argument(help="Program id.")],
    tenant: Annotated[str, typer.Argument(help="Buyer tenant id.")],
    amount_cny: Annotated[float, typer.Option("--amount-cny")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Grant part of a program's budget to a buyer (operators)."""
    with client() as c:
        g = c.grant(program, tenant, yuan_to_fen(amount_cny, "--amount-cny"))
    if as_json:
        print_json(g)
        return
    console.print(
        f"{tenant} holds {g['balance_fen'] / 100:,.2f} yuan of {program}", highlight=False
    )


@vouchers_app.command("redeem")
def redeem(
    program: Annotated[str, typer.Argument(help="Program id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Claim a program's self-service grant (buyers)."""
    with client() as c:
        g = c.redeem(program)
    if as_json:
        print_json(g)
        return
    console.print(f"redeemed {g['amount_fen'] / 100:,.2f} yuan of {program}", highlight=False)


def invoices(
    create: Annotated[
        bool, typer.Option("--create", help="Close an invoice over usage not yet invoiced.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Your invoices (buyers); ``--create`` closes a new one."""
    with client() as c:
        if create:
            c.create_invoice()
        rows = c.invoices()
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            {
                "id": i["id"],
                "created": i["created_at"][:19],
                "lines": i["lines"],
                "gpu_hours": i["gpu_hours"],
                "you_paid": fen_to_yuan(i["buyer_fen"]),
                "vouchers_paid": fen_to_yuan(i["voucher_fen"]),
                "total": fen_to_yuan(i["total_fen"]),
            }
            for i in rows
        ],
        ["id", "created", "lines", "gpu_hours", "you_paid", "vouchers_paid", "total"],
        title="invoices (yuan)",
    )
