"""End to end on loopback, with real processes: the exchange (``suanli up --no-agent`` on a
free port, SQLite), site agents (``suanli agent`` subprocesses, so they can be killed) and
the real Slurm and Ray of the backend tests (``slurm_cluster`` and ``ray_cluster`` of the
root conftest: started from ``scripts/``, under its one skip policy).

The exchange clears every 0.3 s; agents heartbeat every 0.5 s and a site silent for 3 s
is taken down.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from suanli.bench._loopback import SUANLI, clean_env, free_port, stop_process
from suanli.sdk import ApiError, Client

CLEAR_INTERVAL_S = 0.3
HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_TIMEOUT_S = 3.0


@dataclass
class Exchange:
    url: str
    operator: Client
    proc: subprocess.Popen[bytes]
    log: Path
    tmp: Path
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    operator_token: str = ""

    def tenant(self, name: str, role: str, fund_cny: float = 0.0) -> str:
        t = self.operator.create_tenant(name, [{"name": f"{name}-acct", "role": role}])
        if fund_cny:
            self.operator.deposit(t["id"], round(fund_cny * 100))
        return str(t["accounts"][0]["token"])

    def agent(
        self,
        token: str,
        backend: str,
        site: str,
        city: str | None,
        reserve: float,
        *opts: str,
    ) -> subprocess.Popen[bytes]:
        """Start ``suanli agent`` for ``site`` (its log in ``<tmp>/<site>.log``). Every
        site's run folders are under ``<tmp>/runs``: a file system all sites reach, so
        work moved to another site resumes from its checkpoints."""
        argv = [
            SUANLI,
            "agent",
            "--exchange",
            self.url,
            "--token",
            token,
            "--backend",
            backend,
            "--site",
            site,
            *(("--city", city) if city else ()),
            "--reserve",
            f"{reserve:g}",
            "--state-dir",
            str(self.tmp / site),
            "--runs-dir",
            str(self.tmp / "runs"),
            "--poll-interval",
            "0.2",
            "--lease-interval",
            "0.2",
            *opts,
        ]
        with (self.tmp / f"{site}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=log, env=clean_env(), start_new_session=True
            )
        self.agents.append(proc)
        return proc

    def agent_log(self, site: str) -> str:
        return (self.tmp / f"{site}.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def exchange_env() -> dict[str, str]:
    """More ``SUANLI_*`` settings for the exchange (a test module may override this)."""
    return {}


@pytest.fixture
def exchange(tmp_path: Path, exchange_env: dict[str, str]) -> Iterator[Exchange]:
    port = free_port()
    log = tmp_path / "exchange.log"
    env = {
        **clean_env(),
        "SUANLI_AGENT_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
        "SUANLI_AGENT_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
        **exchange_env,
    }
    argv = [
        SUANLI,
        "up",
        "--no-agent",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--clear-interval",
        str(CLEAR_INTERVAL_S),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, start_new_session=True)
    ex: Exchange | None = None
    try:
        token = _token_from(log, proc)
        operator = Client(f"http://127.0.0.1:{port}", token, retries=1)
        _wait_healthy(operator, proc, log)
        ex = Exchange(operator.url, operator, proc, log, tmp_path, operator_token=token)
        yield ex
    finally:
        for agent in ex.agents if ex else []:
            stop_process(agent)
        stop_process(proc)
        if ex is not None:
            ex.operator.close()


def _token_from(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"\b(sl_[A-Za-z0-9_-]{20,})", log.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"suanli up printed no operator token:\n{log.read_text()[-3000:]}")


def _wait_healthy(c: Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c.request("GET", "/healthz")
            return
        except ApiError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    pytest.fail(f"the exchange did not answer:\n{log.read_text()[-3000:]}")


# ----- the failover scenario, shared by the Slurm and the Ray test -----------------------

# Steps of 0.5 s, resumed from the step in the checkpoint dir; the last line says where
# this attempt started, on which backend.
JOB_COMMAND = (
    'ck="$SUANLI_CHECKPOINT_DIR"; n=$(cat "$ck/step" 2>/dev/null || echo 0); start=$n; '
    'while [ "$n" -lt {steps} ]; do sleep 0.5; n=$((n + 1)); echo $n > "$ck/step"; done; '
    'echo "$SUANLI_ATTEMPT $SUANLI_BACKEND" >> "$ck/finished"; '
    'echo "attempt $SUANLI_ATTEMPT on $SUANLI_BACKEND: resumed at step $start of {steps}"'
)
# Mixed sizes: 8-GPU work fits only the 8-GPU node of the surviving site.
SIZES = (1, 2, 1, 4, 1, 2, 8, 1, 2, 4, 1, 1, 2, 1, 8, 1, 4, 2, 1, 1, 2, 1, 4, 1)
STEPS = (2, 4, 6, 3, 5, 2, 4, 6, 3, 5, 2, 4, 6, 3, 5, 2, 4, 6, 3, 5, 2, 4, 6, 3)  # 1-3 s


def job_spec(i: int) -> dict[str, Any]:
    gpus, steps = SIZES[i % len(SIZES)], STEPS[i % len(STEPS)]
    return {
        "kind": "job",
        "name": f"e2e-{i:02d}",
        "command": JOB_COMMAND.replace("{steps}", str(steps)),
        "resources": {"gpus": gpus},
        # 0.02 reference GPU-hours per GPU: a 72 s plan, far above any run here.
        "work_ref_gpu_hours": 0.02 * gpus,
        "bid_cny_per_ref_gpu_hour": 12.0,
        "data": {"origin_city": "Shanghai"},
        # Checkpoints every 0.0001 h (0.36 s) into the work's folder in the shared runs.
        "checkpoint": {"every_h": 0.0001},
    }


@dataclass(frozen=True)
class Outcome:
    jobs: list[dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    usage: list[dict[str, Any]]
    audit: list[str]
    kill_at_s: float
    done_at_s: float
    saved_steps: dict[str, int]  # job id → steps checkpointed when the local agent died


def _step(tmp: Path, job_id: str) -> int:
    """The step a job last checkpointed (0: none), in the shared runs folder."""
    try:
        return int((tmp / "runs" / job_id / "checkpoints" / "step").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def failover(
    ex: Exchange,
    survivor: Callable[[str], subprocess.Popen[bytes]],
    survivor_site: str,
    wait: Callable[..., None],
    n_jobs: int = 24,
) -> Outcome:
    """Two sites — ``e2e-local`` (4 GPUs, cheaper) and ``survivor_site`` (started by
    ``survivor(seller_token)``) — and ``n_jobs`` jobs; the local agent is SIGKILLed once it
    runs work; wait for every job to end."""
    t0 = time.monotonic()
    local_token = ex.tenant("dc-local", "seller")
    survivor_token = ex.tenant("dc-survivor", "seller")
    buyer = Client(ex.url, ex.tenant("lab", "buyer", fund_cny=100_000), retries=2)
    inventory = ex.tmp / "inventory.yaml"
    inventory.write_text("pools:\n  - {gpu: H100, count: 4, simulated: true}\n")
    local = ex.agent(
        local_token, "local", "e2e-local", "Shanghai", 5.0, "--inventory", str(inventory)
    )
    survivor(survivor_token)

    def pools_up() -> bool:
        pools = [str(p["id"]) for p in ex.operator.request("GET", "/v1/pools")]
        return "e2e-local/local-h100" in pools and any(
            p.startswith(f"{survivor_site}/") for p in pools
        )

    wait(pools_up, 120, f"both sites' pools to register:\n{ex.agent_log(survivor_site)}")
    ids = [str(buyer.submit(job_spec(i))["id"]) for i in range(n_jobs)]

    def running_locally() -> bool:
        local_jobs = [
            j["id"]
            for j in buyer.jobs(limit=1000)
            if j["state"] == "running" and j["pool_id"].startswith("e2e-local/")
        ]
        # Two at work there, one with a checkpoint saved: its move must resume from it.
        return len(local_jobs) >= 2 and any(_step(ex.tmp, i) >= 1 for i in local_jobs)

    wait(running_locally, 60, "two jobs to run on the local site, one past a checkpoint")
    stop_process(local, signal.SIGKILL)
    kill_at = time.monotonic() - t0
    saved = {i: _step(ex.tmp, i) for i in ids}

    def all_done() -> bool:
        return all(
            j["state"] in ("succeeded", "failed", "cancelled") for j in buyer.jobs(limit=1000)
        )

    wait(all_done, 150, f"every job to end:\n{ex.agent_log(survivor_site)}")
    done_at = time.monotonic() - t0
    jobs = [buyer.job(i) for i in ids]
    events = {i: buyer.events(i) for i in ids}
    usage = buyer.usage(limit=1000)
    audit = list(ex.operator.request("GET", "/v1/ledger/audit"))
    buyer.close()
    return Outcome(jobs, events, usage, audit, kill_at, done_at, saved)


@pytest.fixture
def run_failover(
    exchange: Exchange, wait_until: Callable[..., None]
) -> Callable[[Callable[[str], subprocess.Popen[bytes]], str], Outcome]:
    """``run_failover(start_survivor, survivor_site)``: the scenario of ``failover``."""
    return lambda start, site: failover(exchange, start, site, wait_until)
