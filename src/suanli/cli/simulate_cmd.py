"""``suanli simulate SCENARIO``: the national simulator, every policy side by side.

``suanli simulate A B --compare`` runs two scenario variants (e.g. the status quo and
"add 10k H20 in Qingyang") and puts the same metrics side by side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli._output import console, err_console, print_table
from suanli.errors import InvalidInput

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def simulate(
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(
            help="Built-in scenario name or a scenario file (.toml, .yaml); two with --compare.",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Run two scenarios and compare them.")
    ] = False,
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies",
            help="Comma-separated: local, cheapest, nearest, exchange "
            "(default: all of them; exchange with --compare).",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        float | None, typer.Option("--days", help="Simulated days (default: the scenario's).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Workload seed (default: the scenario's).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write summary.json, time series CSV and report.html here."),
    ] = None,
    inference_trace: Annotated[
        Path | None,
        typer.Option(
            "--inference-trace", help="Azure LLM CSV or Mooncake JSONL: token profile of services."
        ),
    ] = None,
    jobs_trace: Annotated[
        Path | None,
        typer.Option("--jobs-trace", help="Alibaba openb pod-list CSV: batch jobs to replay."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Policies run at once in separate processes (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    list_builtin: Annotated[
        bool, typer.Option("--list", help="List the built-in scenarios and exit.")
    ] = False,
) -> None:
    """Simulate a national fleet over days: utilization, demand served, prices, money."""
    from suanli.sim.scenario import builtin_scenarios, load_scenario
    from suanli.sim.simulate import SIM_POLICIES, parse_policies
    from suanli.sim.traces import read_inference_trace, read_jobs_trace

    if list_builtin:
        for name in builtin_scenarios():
            console.print(f"{name}: {load_scenario(name).description}", highlight=False)
        return
    names = scenarios or []
    if compare and len(names) != 2:
        raise InvalidInput(f"--compare needs two scenarios, got {len(names)}")
    if not compare and len(names) != 1:
        raise InvalidInput(
            f"give one scenario (built-in: {', '.join(builtin_scenarios())}) or two with --compare"
        )
    chosen = parse_policies(policies or ("exchange" if compare else ",".join(SIM_POLICIES)))
    loaded = [load_scenario(n) for n in names]
    inf = read_inference_trace(inference_trace) if inference_trace is not None else None
    jobs = read_jobs_trace(jobs_trace) if jobs_trace is not None else None
    procs = workers if workers is not None else min(len(chosen), os.cpu_count() or 1)
    results = [_run(sc, chosen, days, seed, inf, jobs, procs) for sc in loaded]
    if compare:
        _report_compare(results, chosen, out, as_json)
    else:
        _report_one(results[0], out, as_json)


def _run(
    sc: Any, policies: list[str], days: Any, seed: Any, inf: Any, jobs: Any, workers: int
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from suanli.sim.simulate import simulate as run_simulation

    run_days = days if days is not None else sc.days
    per_policy = max(1, round(run_days * 24 * 60 / sc.market.period_min))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        tasks = {p: progress.add_task(f"{sc.name} · {p}", total=per_policy) for p in policies}
        return run_simulation(
            sc,
            policies,
            days=days,
            seed=seed,
            inference_trace=inf,
            jobs_trace=jobs,
            on_round=lambda p: progress.advance(tasks[p]),
            workers=workers,
        )


def _report_one(result: Any, out: Path | None, as_json: bool) -> None:
    from suanli.sim.outputs import result_document, write_outputs
    from suanli.sim.report_html import hub_names
    from suanli.sim.table import metric_rows

    written = write_outputs(result, out) if out is not None else []
    if as_json:
        typer.echo(json.dumps(result_document(result), ensure_ascii=False, indent=2))
        return
    policies = list(result.results)
    rows = metric_rows([(p, r.summary) for p, r in result.results.items()], hub_names(result))
    print_table(
        rows,
        ["metric", *policies],
        title=(
            f"{result.scenario.name}: {result.days:g} days, seed {result.seed}, "
            f"{int(result.world.capacity_gpus.sum()):,} GPUs in {len(result.world.pool_ids)} pools"
        ),
    )
    for note in result.workload.notes:
        console.print(f"  {note}", highlight=False)
    for path in written:
        console.print(f"  wrote {path}", highlight=False)


def _report_compare(
    results: list[Any], policies: list[str], out: Path | None, as_json: bool
) -> None:
    from suanli.sim.outputs import result_document, write_outputs
    from suanli.sim.report_html import hub_names
    from suanli.sim.table import metric_rows

    labels = [r.scenario.name for r in results]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]} (A)", f"{labels[1]} (B)"]
    written: list[Path] = []
    if out is not None:
        for tag, label, r in zip("AB", labels, results, strict=True):
            written += write_outputs(r, out / f"{tag}-{_safe(label)}")
    docs = {label: result_document(r) for label, r in zip(labels, results, strict=True)}
    if out is not None:
        path = out / "compare.json"
        path.write_text(json.dumps(docs, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    if as_json:
        typer.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    hubs: list[tuple[str, str]] = []
    for r in results:
        hubs += [h for h in hub_names(r) if h not in hubs]
    columns = [
        (f"{label} · {p}", r.results[p].summary)
        for p in policies
        for label, r in zip(labels, results, strict=True)
    ]
    print_table(
        metric_rows(columns, hubs),
        ["metric", *(c for c, _ in columns)],
        title=f"{labels[0]} vs {labels[1]}: {results[0].days:g} days, seed {results[0].seed}",
    )
    for path in written:
        console.print(f"  wrote {path}", highlight=False)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
