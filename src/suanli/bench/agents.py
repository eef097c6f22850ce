"""``suanli bench agents``: how fast site agents turn placements into running work and
finished work into ledger entries, and what an agent costs per job.

The exchange runs in its own process on loopback (``suanli up --no-agent``, SQLite,
rounds every ``clear_interval_s``); each backend gets its own site and its own agent
process (``suanli agent``), one backend after the other. A buyer submits ``jobs`` short
1-GPU jobs (``true``) to the local backend's site (``cluster_jobs`` to a Slurm or Ray
site when one is given), and the benchmark reads back, per job:

- placement → running: the ``placed`` event to the ``running`` event (the exchange's
  clock), and to the start the backend recorded (its own clock; same host);
- exit → ledger capture: the end the backend recorded to the job's final event, written
  in the same transaction as its usage record and ledger entries;

and, for each agent process, its own CPU time (``/proc/<pid>/stat`` utime + stime, not
the jobs') per job and its peak resident memory (``VmHWM``). Figures are measured in
this run, never judged pass/fail.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from suanli.bench._loopback import AgentProcess, ExchangeProcess, wait_for
from suanli.sdk import Client

__all__ = ["run_agents_bench"]

LOCAL_GPUS = 32  # simulated: the local site's one node (≤ 64 GPUs per node)


@dataclass
class _Exchange:
    url: str
    operator: Client
    proc: ExchangeProcess
    tmp: Path


def _start_exchange(tmp: Path, clear_interval_s: float) -> _Exchange:
    env = {"SUANLI_AGENT_HEARTBEAT_INTERVAL_S": "1", "SUANLI_AGENT_HEARTBEAT_TIMEOUT_S": "10"}
    proc = ExchangeProcess(tmp / "data", tmp / "exchange.log", clear_interval_s, env)
    proc.start(60)
    return _Exchange(proc.url, proc.client(), proc, tmp)


def _proc_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _run_backend(
    ex: _Exchange,
    backend: str,
    jobs: int,
    agent_opts: Sequence[str],
    buyer: Client,
) -> dict[str, Any]:
    site = f"bench-{backend}"
    seller = ex.operator.create_tenant(f"dc-{backend}", [{"name": "agent", "role": "seller"}])
    agent = AgentProcess(
        ex.proc,
        seller["accounts"][0]["token"],
        backend,
        site,
        "Shanghai",
        5.0,
        ex.tmp / site,
        ex.tmp / f"{site}.log",
        opts=(*agent_opts, "--log-level", "WARNING"),
        poll_interval_s=0.05,
        lease_interval_s=0.1,
    )
    agent.start()
    assert agent.proc is not None
    pid = agent.proc.pid
    try:
        wait_for(
            lambda: any(
                str(p["id"]).startswith(f"{site}/") and p["on_offer"]
                for p in ex.operator.request("GET", "/v1/pools", params={"limit": 1000})
            ),
            120,
            f"the {backend} agent to register (see {ex.tmp / site}.log)",
        )
        cpu0 = _proc_cpu_s(pid)
        t0 = time.monotonic()
        spec = {
            "kind": "job",
            "command": "true",
            "resources": {"gpus": 1},
            "work_ref_gpu_hours": 0.01,  # a 36 s plan for a job that ends at once
            "bid_cny_per_ref_gpu_hour": 12.0,
            "data": {"origin_city": "Shanghai"},
        }
        with ThreadPoolExecutor(8) as pool:
            ids = list(
                pool.map(
                    lambda i: str(buyer.submit({**spec, "name": f"{backend}-{i}"})["id"]),
                    range(jobs),
                )
            )
        submitted_s = time.monotonic() - t0

        def done() -> bool:
            return not any(
                buyer.jobs(state=s, limit=1) for s in ("pending", "placed", "running", "preempted")
            )

        wait_for(done, 60 + jobs * 2.0, f"{jobs} {backend} jobs to end")
        wall_s = time.monotonic() - t0
        cpu_s = _proc_cpu_s(pid) - cpu0
        rss_mb = _proc_peak_rss_mb(pid)
    finally:
        agent.stop()
    # The next backend's work must not land on this site.
    ex.operator.request(
        "POST",
        f"/v1/sites/{site}/state",
        json_body={"up": False, "reason": "benchmark: next backend"},
        idempotent=True,
    )
    return _measure(buyer, backend, set(ids), wall_s, submitted_s, cpu_s, rss_mb)


def _events(buyer: Client, after_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = buyer.request("GET", "/v1/events", params={"after_id": after_id, "limit": 1000})
        if not page:
            return out
        out += page
        after_id = int(page[-1]["id"])


def _usage(buyer: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = buyer.request("GET", "/v1/usage", params={"limit": 1000, "offset": len(out)})
        out += page
        if len(page) < 1000:
            return out


def _measure(
    buyer: Client,
    backend: str,
    ids: set[str],
    wall_s: float,
    submitted_s: float,
    cpu_s: float,
    rss_mb: float,
) -> dict[str, Any]:
    placed: dict[str, float] = {}
    running: dict[str, float] = {}
    ended: dict[str, float] = {}  # the event written with the usage record, same instant
    states: dict[str, str] = {}
    for e in _events(buyer, 0):
        job = str(e["subject_id"])
        if job not in ids or e["kind"] != "transition":
            continue
        if e["to_state"] == "placed":
            placed[job] = _ts(e["at"])
        elif e["to_state"] == "running":
            running[job] = _ts(e["at"])
        elif e["to_state"] in ("succeeded", "failed"):
            ended[job] = _ts(e["at"])
        states[job] = str(e["to_state"])
    to_running = [running[j] - placed[j] for j in running if j in placed]
    to_start: list[float] = []
    to_ledger: list[float] = []
    for u in _usage(buyer):
        job = str(u["item_id"])
        metered = (u.get("details") or {}).get("backend_usage") or {}
        if job not in ids:
            continue
        if metered.get("started_at_s") is not None and job in placed:
            to_start.append(float(metered["started_at_s"]) - placed[job])
        if metered.get("ended_at_s") is not None and job in ended:
            to_ledger.append(ended[job] - float(metered["ended_at_s"]))
    n = len(ids)
    ok = sum(1 for j in ids if states.get(j) == "succeeded")
    return {
        "backend": backend,
        "jobs": n,
        "succeeded": ok,
        "wall_s": wall_s,
        "submit_s": submitted_s,
        "jobs_per_s": n / wall_s if wall_s > 0 else None,
        "place_to_running_p50_s": _pct(to_running, 50),
        "place_to_running_p90_s": _pct(to_running, 90),
        "place_to_start_p50_s": _pct(to_start, 50),
        "exit_to_ledger_p50_s": _pct(to_ledger, 50),
        "exit_to_ledger_p90_s": _pct(to_ledger, 90),
        "agent_cpu_ms_per_job": cpu_s * 1000.0 / n if n else None,
        "agent_peak_rss_mb": rss_mb,
    }


def run_agents_bench(
    jobs: int = 1000,
    *,
    cluster_jobs: int = 50,
    slurm_conf: Path | None = None,
    ray_address: str | None = None,
    clear_interval_s: float = 0.2,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); Slurm and Ray only when given."""
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="suanli-bench-agents-") as d:
        tmp = Path(d)
        inventory = tmp / "inventory.yaml"
        inventory.write_text(f"pools:\n  - {{gpu: H100, count: {LOCAL_GPUS}, simulated: true}}\n")
        ex = _start_exchange(tmp, clear_interval_s)
        try:
            b = ex.operator.create_tenant("bench-lab", [{"name": "u", "role": "buyer"}])
            ex.operator.deposit(b["id"], 10**10)
            with Client(ex.url, b["accounts"][0]["token"], retries=2) as buyer:
                plan: list[tuple[str, int, list[str]]] = [
                    ("local", jobs, ["--inventory", str(inventory)])
                ]
                if slurm_conf is not None:
                    opts = ["--backend-opt", f"slurm_conf={slurm_conf}"]
                    plan.append(("slurm", cluster_jobs, [*opts, "--backend-opt", "simulated=true"]))
                else:
                    notes.append("slurm: not measured (give --slurm-conf)")
                if ray_address is not None:
                    opts = [f"address={ray_address}", "gpu_resource=H100", "gpu_model=H100"]
                    plan.append(
                        ("ray", cluster_jobs, [a for o in opts for a in ("--backend-opt", o)])
                    )
                else:
                    notes.append("ray: not measured (give --ray-address)")
                for backend, n, opts in plan:
                    rows.append(_run_backend(ex, backend, n, opts, buyer))
            audit = list(ex.operator.request("GET", "/v1/ledger/audit"))
        finally:
            ex.operator.close()
            ex.proc.stop()
    notes.append(
        f"exchange: SQLite, a clearing round every {clear_interval_s:g} s; agents poll every "
        "0.05 s and lease every 0.1 s; local: "
        f"{LOCAL_GPUS} simulated GPUs, 1-GPU jobs running `true`"
    )
    notes.append("ledger audit: " + ("balanced" if not audit else "; ".join(audit)))
    return {"rows": rows, "notes": notes, "jobs": jobs, "cpus": os.cpu_count()}
