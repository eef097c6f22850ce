"""``suanli bench …``: benchmarks that print ratios measured in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli._output import console, print_json, print_table
from suanli.errors import InvalidInput

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


@bench_app.command("api")
def api(
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Jobs to submit per database.")] = 3000,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=512, help="Client threads.")
    ] = 32,
    clear_interval_s: Annotated[
        float, typer.Option("--clear-interval", min=0.05, help="Seconds between rounds.")
    ] = 1.0,
    pg_url: Annotated[
        str | None, typer.Option("--pg-url", help="Admin URL of a PostgreSQL to use.")
    ] = None,
    databases: Annotated[
        str, typer.Option("--databases", help="Comma-separated: sqlite, postgresql.")
    ] = "sqlite,postgresql",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Load the exchange's API on loopback: submissions/s, latency, time to placement."""
    from suanli.bench.api import run_api_bench

    result = run_api_bench(
        jobs=jobs,
        concurrency=concurrency,
        clear_interval_s=clear_interval_s,
        pg_url=pg_url,
        databases=tuple(d.strip() for d in databases.split(",") if d.strip()),
    )
    if as_json:
        print_json(result)
        return
    print_table(
        result["rows"],
        [
            "database",
            "ok",
            "errors",
            "per_s",
            "p50_ms",
            "p99_ms",
            "placed",
            "place_p50_s",
            "place_p99_s",
            "rounds",
            "max_round_solve_ms",
        ],
        title=f"API benchmark: {jobs} job submissions, {concurrency} clients",
        headers={
            "per_s": "submissions/s",
            "p50_ms": "p50 ms",
            "p99_ms": "p99 ms",
            "place_p50_s": "to placement p50 s",
            "place_p99_s": "p99 s",
            "max_round_solve_ms": "max solve ms",
        },
    )
    for note in result["notes"]:
        console.print(f"  {note}")


@bench_app.command("simulate")
def simulate(
    scenario: Annotated[
        str, typer.Option("--scenario", help="Built-in scenario or file.")
    ] = "china-2025",
    days: Annotated[float, typer.Option("--days", min=0.01, help="Simulated days.")] = 7.0,
    policies: Annotated[
        str, typer.Option("--policies", help="Comma-separated policy names.")
    ] = "exchange,local,cheapest,nearest",
    seed: Annotated[int | None, typer.Option("--seed", help="Workload seed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Time a multi-day simulation per policy: per simulated day, per round, peak memory."""
    from suanli.bench.simulate import run_simulate_bench

    result = run_simulate_bench(scenario, days, policies, seed)
    if as_json:
        print_json(result)
        return
    print_table(
        result["rows"],
        [
            "policy",
            "rounds",
            "wall_s",
            "cpu_s",
            "wall_s_per_day",
            "wall_ms_per_round",
            "cpu_ms_per_round",
            "peak_rss_mb",
            "wall_vs_exchange",
        ],
        title=f"Simulator benchmark: {result['scenario']}, {days:g} days, each policy alone",
        headers={
            "wall_s": "wall s",
            "cpu_s": "CPU s",
            "wall_s_per_day": "wall s / sim day",
            "wall_ms_per_round": "wall ms / round",
            "cpu_ms_per_round": "CPU ms / round",
            "peak_rss_mb": "peak RSS MB",
            "wall_vs_exchange": "÷ exchange",
        },
    )


@bench_app.command("agents")
def agents(
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, help="Short jobs on the local backend.")
    ] = 1000,
    cluster_jobs: Annotated[
        int, typer.Option("--cluster-jobs", min=1, help="Jobs on Slurm and on Ray, if given.")
    ] = 50,
    slurm_conf: Annotated[
        Path | None, typer.Option("--slurm-conf", help="slurm.conf of a Slurm to measure.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Dashboard URL of a Ray head to measure.")
    ] = None,
    clear_interval_s: Annotated[
        float, typer.Option("--clear-interval", min=0.05, help="Seconds between rounds.")
    ] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Site agents: placement → running, exit → ledger, agent CPU and memory per job."""
    from suanli.bench.agents import run_agents_bench

    result = run_agents_bench(
        jobs,
        cluster_jobs=cluster_jobs,
        slurm_conf=slurm_conf,
        ray_address=ray_address,
        clear_interval_s=clear_interval_s,
    )
    if as_json:
        print_json(result)
        return
    print_table(
        result["rows"],
        [
            "backend",
            "jobs",
            "succeeded",
            "wall_s",
            "jobs_per_s",
            "place_to_running_p50_s",
            "place_to_running_p90_s",
            "place_to_start_p50_s",
            "exit_to_ledger_p50_s",
            "exit_to_ledger_p90_s",
            "agent_cpu_ms_per_job",
            "agent_peak_rss_mb",
        ],
        title=f"Site agents benchmark ({result['cpus']} CPUs)",
        headers={
            "wall_s": "wall s",
            "jobs_per_s": "jobs/s",
            "place_to_running_p50_s": "placed→running p50 s",
            "place_to_running_p90_s": "p90 s",
            "place_to_start_p50_s": "placed→backend start p50 s",
            "exit_to_ledger_p50_s": "exit→ledger p50 s",
            "exit_to_ledger_p90_s": "p90 s",
            "agent_cpu_ms_per_job": "agent CPU ms/job",
            "agent_peak_rss_mb": "agent peak RSS MB",
        },
    )
    for note in result["notes"]:
        console.print(f"  {note}")


@bench_app.command("chaos")
def chaos(
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Jobs of 1–8 GPUs to run.")] = 200,
    kills: Annotated[int, typer.Option("--kills", min=0, help="kill -9s to carry out.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the jobs and the kills.")] = 1,
    gpus_per_site: Annotated[
        int, typer.Option("--gpus-per-site", min=8, max=64, help="Simulated GPUs per site.")
    ] = 16,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", min=10.0, help="Seconds before giving up.")
    ] = None,
    agent_opt: Annotated[
        list[str] | None, typer.Option("--agent-opt", help="Extra `suanli agent` argument.")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", help="A new folder to keep logs and journals in.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Kill -9 the exchange and site agents while work runs; count what was lost or
    billed twice, check the ledger, look for processes left running."""
    from suanli.bench.chaos import ChaosSettings, run_chaos

    result = run_chaos(
        ChaosSettings(
            jobs=jobs,
            kills=kills,
            seed=seed,
            gpus_per_site=gpus_per_site,
            timeout_s=timeout_s,
            agent_opts=tuple(agent_opt or ()),
            work_dir=work_dir,
        )
    )
    if as_json:
        print_json(result)
    else:
        _print_chaos(result)
    bad = result["lost"] or result["double_billed"] or result["orphans"]
    if bad or not result["ledger_balanced"]:
        raise typer.Exit(1)


def _listed(items: list[Any]) -> str:
    return str(len(items)) + (f" ({'; '.join(map(str, items[:3]))})" if items else "")


def _print_chaos(r: dict[str, Any]) -> None:
    reasons = "".join(f"\n  {n} × {why}" for why, n in r["failed_reasons"].items())
    rows = [
        ("jobs (N)", r["jobs"]),
        (
            "kills (K)",
            f"{r['kills_done']}: {r['exchange_kills']} exchange, {r['agent_kills']} agent",
        ),
        ("succeeded exactly once", r["succeeded"]),
        ("failed, with a reason", f"{r['failed']}{reasons}"),
        ("ended otherwise than written", _listed(r["unexpected"])),
        ("lost", _listed(r["lost"])),
        ("double-billed", _listed(r["double_billed"])),
        ("ledger balanced", "yes" if r["ledger_balanced"] else _listed(r["ledger_notes"])),
        (
            "orphans",
            f"{r['orphans']} ({r['orphan_job_processes']} job processes, "
            f"daemons: {', '.join(r['orphan_daemons']) or 'none'})",
        ),
        ("job processes outliving a killed agent", r["outlived_agent"]),
        ("preemptions", r["preemptions"]),
        ("resumed from a checkpoint", r["resumed"]),
        ("wall s", r["wall_s"]),
    ]
    print_table(
        [{"figure": k, "value": v} for k, v in rows],
        ["figure", "value"],
        title=f"Chaos: {r['jobs']} jobs on two local sites, seed {r['settings']['seed']}",
    )
    for k in r["kills"]:
        outlived = (
            f", {k['outlived_agent']} of its {k['job_processes']} job processes outlived it; "
            f"registered again {k['registered_after_s']} s after its restart"
            if "job_processes" in k
            else ""
        )
        console.print(f"  kill at {k['at_s']} s: {k['target']}, down {k['down_s']} s{outlived}")


@bench_app.command("gateway")
def gateway(
    rates: Annotated[
        str, typer.Option("--rates", help="Comma-separated requests/s, rising until saturation.")
    ] = "100,250,500,750,1000",
    seconds: Annotated[
        float, typer.Option("--seconds", min=1.0, help="Seconds of load per rate and target.")
    ] = 8.0,
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Output tokens per answer.")] = 16,
    modes: Annotated[str, typer.Option("--modes", help="plain, stream or both.")] = "plain,stream",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Latency the inference gateway adds over calling the upstream directly (p50, p99),
    streaming and not, at rising request rates; metering lag and exactness."""
    from suanli.bench.gateway import GatewayBenchSettings, run_gateway_bench

    try:
        rate_list = tuple(float(r) for r in rates.split(",") if r.strip())
    except ValueError:
        raise InvalidInput(f"--rates {rates!r}: expected numbers like 100,250,500") from None
    mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not rate_list or any(r <= 0 for r in rate_list):
        raise InvalidInput("--rates: give positive requests/s")
    if not mode_list or not set(mode_list) <= {"plain", "stream"}:
        raise InvalidInput(f"--modes {modes!r}: expected plain, stream or both")
    result = run_gateway_bench(
        GatewayBenchSettings(rates=rate_list, seconds=seconds, tokens=tokens, modes=mode_list)
    )
    if as_json:
        print_json(result)
        return
    print_table(
        result["rows"],
        [
            "mode",
            "rate",
            "gateway_rps",
            "direct_p50_ms",
            "gateway_p50_ms",
            "added_p50_ms",
            "direct_p99_ms",
            "gateway_p99_ms",
            "added_p99_ms",
            "p50_ratio",
            "gateway_errors",
            "gateway_cpu_ms_per_req",
            "metering_lag_p50_s",
            "metering_lag_p99_s",
        ],
        title=f"Gateway benchmark ({result['cpus']} CPUs): first byte, direct vs through it",
        headers={
            "rate": "offered/s",
            "gateway_rps": "served/s",
            "direct_p50_ms": "direct p50 ms",
            "gateway_p50_ms": "gateway p50 ms",
            "added_p50_ms": "added p50 ms",
            "direct_p99_ms": "direct p99 ms",
            "gateway_p99_ms": "gateway p99 ms",
            "added_p99_ms": "added p99 ms",
            "p50_ratio": "p50 ÷ direct",
            "gateway_errors": "errors",
            "gateway_cpu_ms_per_req": "gateway CPU ms/req",
            "metering_lag_p50_s": "metering lag p50 s",
            "metering_lag_p99_s": "p99 s",
        },
    )
    m = result["metering"]
    console.print(
        f"  metering: {m['metered']} requests acknowledged for {m['answered']} answered "
        f"({'exact' if m['exact'] else 'NOT exact'}), {m['duplicate_batches']} duplicate batches"
    )
    for note in result["notes"]:
        console.print(f"  {note}")
