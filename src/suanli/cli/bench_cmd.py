"""``suanli bench …``: benchmarks that print ratios measured in one run."""

from __future__ import annotations

from typing import Annotated

import typer

from suanli.cli._output import console, print_json, print_table

__all__ = ["register"]

bench_app = typer.Typer(help="Benchmarks (ratios against baselines measured in the same run).")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("clearing")
def clearing(
    size: Annotated[str, typer.Option("--size", help="small, medium or national.")] = "medium",
    seed: Annotated[int, typer.Option("--seed", help="Instance seed.")] = 1,
    policies: Annotated[
        str, typer.Option("--policies", help="Comma-separated policy names.")
    ] = "exchange,local,cheapest,nearest,lp-bound,milp",
    milp_time_limit_s: Annotated[
        float, typer.Option("--milp-time-limit", min=1.0, help="Seconds for the MILP.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Clear one generated instance with every policy and compare them."""
    from suanli.bench.clearing import run_clearing_bench

    result = run_clearing_bench(
        size, seed, [p.strip() for p in policies.split(",") if p.strip()], milp_time_limit_s
    )
    if as_json:
        print_json(result)
        return
    print_table(
        result["rows"],
        [
            "policy",
            "welfare",
            "share_of_lp",
            "gpus_placed",
            "jobs_placed",
            "demand_served",
            "slo_violations",
            "solve_s",
            "exchange_speedup",
        ],
        title=(
            f"Clearing benchmark: {result['instance']} — {result['pools']} pools, "
            f"{result['jobs']} jobs, {result['services']} services, {result['cities']} cities"
        ),
        headers={
            "welfare": "welfare yuan/h",
            "share_of_lp": "÷ LP bound",
            "demand_served": "inference served",
            "slo_violations": "SLO violations",
            "solve_s": "solve s",
            "exchange_speedup": "exchange speed-up",
        },
    )
    for note in result["notes"]:
        console.print(f"  {note}")
