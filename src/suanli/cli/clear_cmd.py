"""``suanli clear SNAPSHOT``: clear a market written as JSON or YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli._output import console, print_json, print_table

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("clear")(clear)


def clear(
    snapshot: Annotated[Path, typer.Argument(help="Market snapshot file (.json, .yaml or .yml).")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy", "-p", help="exchange, local, cheapest, nearest, lp-bound or milp."
        ),
    ] = "exchange",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows per table (0: all).")] = 30,
) -> None:
    """Clear one round: placements, prices, payments, and why the rest was left out."""
    from suanli.market.policies import make_policy
    from suanli.specs.snapshot import load_snapshot

    snap, ctx = load_snapshot(snapshot)
    decision = make_policy(policy, ctx).clear(snap)
    if as_json:
        print_json(decision)
        return

    def cut(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows if limit == 0 else rows[:limit]

    print_table(
        cut(
            [
                {
                    "job": p.job_id,
                    "pool": p.pool_id,
                    "gpus": p.gpus,
                    "hours": p.duration_h,
                    "price": p.price_cny_per_gpu_hour,
                    "buyer pays": p.payment.buyer_fen / 100,
                    "voucher": p.payment.voucher_fen / 100,
                }
                for p in decision.jobs
            ]
        ),
        ["job", "pool", "gpus", "hours", "price", "buyer pays", "voucher"],
        title=f"Jobs placed ({len(decision.jobs)}) — price in yuan per GPU-hour, money in yuan",
    )
    print_table(
        cut(
            [
                {
                    "service": s.service_id,
                    "served rps": s.served_rps,
                    "demand rps": s.demand_rps,
                    "replicas": ", ".join(
                        f"{r.replicas}×{r.gpus_per_replica} @ {r.pool_id}"
                        + (f" ({r.required} for min_replicas)" if r.required else "")
                        for r in s.replicas
                    ),
                    "worst TTFT ms": max((r.rtt_ms + r.ttft_ms for r in s.routes), default=None),
                }
                for s in decision.services
            ]
        ),
        ["service", "served rps", "demand rps", "replicas", "worst TTFT ms"],
        title=f"Services ({len(decision.services)})",
    )
    sold = [p for p in decision.prices if p.gpus_sold]
    print_table(
        cut(
            [
                {
                    "pool": p.pool_id,
                    "price": p.price_cny_per_gpu_hour,
                    "reserve": p.reserve_cny_per_gpu_hour,
                    "rent": p.scarcity_rent_cny_per_gpu_hour,
                    "sold": p.gpus_sold,
                    "free after": p.free_gpus_after,
                }
                for p in sold
            ]
        ),
        ["pool", "price", "reserve", "rent", "sold", "free after"],
        title=f"Prices of pools that sold ({len(sold)} of {len(decision.prices)})",
    )
    print_table(
        cut(
            [
                {"item": u.item_id, "kind": u.kind, "why": "; ".join(str(r) for r in u.reasons)}
                for u in decision.unplaced
            ]
        ),
        ["item", "kind", "why"],
        title=f"Left unplaced ({len(decision.unplaced)})",
    )
    bound = decision.upper_bound_cny_per_hour
    console.print(
        f"policy [bold]{decision.policy}[/]: welfare {decision.welfare_cny_per_hour:,.1f} yuan/h"
        + (f" (upper bound {bound:,.1f})" if bound else "")
        + "".join(f"\n  {n}" for n in decision.notes)
    )
