"""``suanli bench chaos``: kill -9 the exchange and site agents at random moments while
work runs, then check that nothing was lost, billed twice or left running.

The exchange runs as ``suanli up --no-agent`` on SQLite in a temporary data dir (a round
every ``clear_interval_s``; agents heartbeat every ``heartbeat_interval_s`` and a site
silent for ``heartbeat_timeout_s`` is taken down). Two sites, each ``suanli agent
--backend local`` with its own state dir and ``gpus_per_site`` simulated H100s on one
node: ``chaos-a`` in Shanghai at reserve 5, ``chaos-b`` in Beijing at reserve 6. A buyer
submits ``jobs`` jobs of 1–8 GPUs (seeded): each counts steps of 0.5 s into its checkpoint
folder (the sites share one runs dir, as sites share storage), resumes from the step it
finds there, and ends with the exit code it was written to have (a share ``fail_share``
exits 3).

``kills`` times, when a seeded share of the jobs has ended, one daemon is killed with
SIGKILL, alternating between the exchange (started again at once on the same data dir and
port) and a random agent (started again with the same state dir after a seeded pause,
sometimes shorter and sometimes longer than the heartbeat timeout). Whether the killed
agent's job processes outlive it is recorded ``orphan_grace_s`` after the kill.

At the end (every job over, or ``timeout_s`` spent) the exchange's own records are judged
(``chaos_check``), the daemons are stopped with TERM, and any process of the run still
alive is an orphan: a job process left after every job ended, or a daemon that needed
KILL. Loopback only; every process started here is gone when it returns.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suanli.bench._loopback import AgentProcess, ExchangeProcess, wait_for
from suanli.bench._procscan import alive, descendants, with_env
from suanli.bench.chaos_check import verdict
from suanli.sdk import ApiError, Client

__all__ = ["ChaosSettings", "JobPlan", "KillPlan", "plan_jobs", "plan_kills", "run_chaos"]

STEP_S = 0.5
FAIL_EXIT_CODE = 3
DEPOSIT_FEN = 10**9
SITES = (("chaos-a", "Shanghai", 5.0), ("chaos-b", "Beijing", 6.0))
# Steps resumed from the checkpoint (written by rename, so a kill never leaves it torn);
# the last line says where this attempt started.
JOB_COMMAND = (
    'ck="$SUANLI_CHECKPOINT_DIR"; n=$(cat "$ck/step" 2>/dev/null); n=${n:-0}; start=$n; '
    'while [ "$n" -lt {steps} ]; do sleep {step_s}; n=$((n + 1)); '
    'echo $n > "$ck/step.tmp" && mv -f "$ck/step.tmp" "$ck/step"; done; '
    'echo "$SUANLI_ATTEMPT $SUANLI_BACKEND" >> "$ck/finished"; '
    'echo "attempt $SUANLI_ATTEMPT: resumed at step $start of {steps}"; exit {code}'
)


@dataclass(frozen=True)
class ChaosSettings:
    jobs: int = 200
    kills: int = 10
    seed: int = 1
    gpus_per_site: int = 16
    max_steps: int = 16  # of STEP_S each: jobs of 0.5–8 s
    fail_share: float = 0.05
    clear_interval_s: float = 0.3
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 6.0
    orphan_grace_s: float = 3.0
    stop_grace_s: float = 2.0
    timeout_s: float | None = None  # None: 600 s + 3 s per job
    agent_opts: tuple[str, ...] = ()
    work_dir: Path | None = None  # kept afterwards (logs, journals); None: a temporary one


@dataclass(frozen=True)
class JobPlan:
    name: str
    gpus: int
    steps: int
    exit_code: int

    @property
    def expected(self) -> str:
        return "succeeded" if self.exit_code == 0 else "failed"


@dataclass(frozen=True)
class KillPlan:
    at_done_share: float  # kill once this share of the jobs has ended …
    delay_s: float  # … and this long after
    target: str  # "exchange" or a site id
    down_s: float  # an agent stays dead this long (the exchange restarts at once)


@dataclass
class _Run:
    settings: ChaosSettings
    tmp: Path
    marker: str  # CHAOS_RUN=<id>: in every job's environment
    exchange: ExchangeProcess
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    kills: list[dict[str, Any]] = field(default_factory=list)


def plan_jobs(cfg: ChaosSettings, rng: random.Random) -> list[JobPlan]:
    """``cfg.jobs`` jobs of 1–8 GPUs and 1–``max_steps`` steps; a ``fail_share`` exits 3."""
    return [
        JobPlan(
            name=f"chaos-{i:04d}",
            gpus=rng.randint(1, 8),
            steps=rng.randint(1, cfg.max_steps),
            exit_code=FAIL_EXIT_CODE if rng.random() < cfg.fail_share else 0,
        )
        for i in range(cfg.jobs)
    ]


def plan_kills(cfg: ChaosSettings, rng: random.Random) -> list[KillPlan]:
    """``cfg.kills`` kills spread over the run, alternating exchange and a random agent."""
    shares = sorted(rng.uniform(0.02, 0.8) for _ in range(cfg.kills))
    first = rng.randint(0, 1)
    out = []
    for i, share in enumerate(shares):
        agent = (i + first) % 2 == 1
        out.append(
            KillPlan(
                at_done_share=share,
                delay_s=rng.uniform(0.0, 2.0),
                target=rng.choice(SITES)[0] if agent else "exchange",
                down_s=cfg.orphan_grace_s + rng.uniform(0.0, 1.5 * cfg.heartbeat_timeout_s)
                if agent
                else 0.0,
            )
        )
    return out


def _spec(job: JobPlan, marker: str, stop_grace_s: float) -> dict[str, Any]:
    command = JOB_COMMAND.replace("{steps}", str(job.steps)).replace("{step_s}", f"{STEP_S:g}")
    name, value = marker.split("=", 1)
    return {
        "kind": "job",
        "name": job.name,
        "command": command.replace("{code}", str(job.exit_code)),
        "resources": {"gpus": job.gpus},
        "work_ref_gpu_hours": 0.02 * job.gpus,  # a plan of about a minute, above any run here
        "bid_cny_per_ref_gpu_hour": 12.0,
        "data": {"origin_city": "Shanghai"},
        # Every 0.36 s, into <runs dir>/<job id>/checkpoints: both sites share the runs dir.
        "checkpoint": {"every_h": 0.0001},
        "env": {name: value},
        "stop_grace_s": stop_grace_s,
    }


def _paged(client: Client, path: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = client.request("GET", path, params={**params, "limit": 1000, "offset": len(out)})
        out += page
        if len(page) < 1000:
            return out


def _events(client: Client) -> dict[str, list[dict[str, Any]]]:
    by_subject: dict[str, list[dict[str, Any]]] = {}
    after = 0
    while page := client.request("GET", "/v1/events", params={"after_id": after, "limit": 1000}):
        for e in page:
            by_subject.setdefault(str(e["subject_id"]), []).append(e)
        after = int(page[-1]["id"])
    return by_subject


def _states(buyer: Client) -> Counter[str] | None:
    """Jobs per state, or None while the exchange does not answer."""
    try:
        return Counter(str(j["state"]) for j in _paged(buyer, "/v1/jobs"))
    except ApiError:
        return None


def _ended(states: Counter[str] | None) -> int:
    return sum(states[s] for s in ("succeeded", "failed", "cancelled")) if states else 0


def _start_agents(run: _Run, operator: Client) -> None:
    cfg = run.settings
    inventory = run.tmp / "inventory.yaml"
    inventory.write_text(
        f"pools:\n  - {{gpu: H100, count: {cfg.gpus_per_site}, simulated: true}}\n"
    )
    for site, city, reserve in SITES:
        seller = operator.create_tenant(f"dc-{site}", [{"name": "agent", "role": "seller"}])
        agent = AgentProcess(
            run.exchange,
            str(seller["accounts"][0]["token"]),
            "local",
            site,
            city,
            reserve,
            run.tmp / site,
            run.tmp / f"{site}.log",
            opts=(
                "--inventory",
                str(inventory),
                "--runs-dir",
                str(run.tmp / "runs"),
                *cfg.agent_opts,
            ),
        )
        agent.start()
        run.agents[site] = agent

    def registered() -> bool:
        for agent in run.agents.values():
            if not agent.alive():
                raise RuntimeError(f"agent {agent.site} exited:\n{agent.tail()}")
        pools = operator.request("GET", "/v1/pools", params={"limit": 1000})
        up = {str(p["id"]).split("/")[0] for p in pools if p["on_offer"]}
        return up >= set(run.agents)

    wait_for(registered, 120, "both agents to register their pools")


def _kill(run: _Run, kill: KillPlan, t0: float) -> None:
    """Carry out one kill and bring the daemon back; record what happened."""
    record: dict[str, Any] = {"at_s": round(time.monotonic() - t0, 1), "target": kill.target}
    if kill.target == "exchange":
        run.exchange.kill()
        started = time.monotonic()
        run.exchange.start()
        record["down_s"] = round(time.monotonic() - started, 1)
    else:
        record |= _kill_agent(run, run.agents[kill.target], kill.down_s)
    run.kills.append(record)


def _kill_agent(run: _Run, agent: AgentProcess, down_s: float) -> dict[str, Any]:
    """kill -9 an agent; ``orphan_grace_s`` later, count its job processes still alive;
    start it again after ``down_s`` and wait until it has registered."""
    pid = agent.proc.pid if agent.proc is not None else -1
    jobs = set(with_env(run.marker)) & descendants(pid)
    agent.kill()
    time.sleep(run.settings.orphan_grace_s)
    outlived = len(alive(jobs))
    time.sleep(max(0.0, down_s - run.settings.orphan_grace_s))
    before = agent.registrations()
    agent.start()
    started = time.monotonic()

    def back() -> bool:
        if not agent.alive():
            raise RuntimeError(f"agent {agent.site} did not restart:\n{agent.tail()}")
        return agent.registrations() > before

    wait_for(back, 300, f"agent {agent.site} to register again")
    return {
        "down_s": round(down_s, 1),
        "job_processes": len(jobs),
        "outlived_agent": outlived,
        "registered_after_s": round(time.monotonic() - started, 1),
    }


def _wait_ended(buyer: Client, count: float, deadline: float) -> int:
    """Wait until ``count`` jobs have ended (or the deadline); how many have."""
    while True:
        ended = _ended(_states(buyer))
        if ended >= count or time.monotonic() >= deadline:
            return ended
        time.sleep(0.2)


def _chaos(run: _Run, buyer: Client, plan: Sequence[KillPlan], deadline: float) -> float:
    """Run the kills as the jobs end, then wait for the rest; the wall time it took."""
    n, t0 = run.settings.jobs, time.monotonic()
    for kill in plan:
        ended = _wait_ended(buyer, kill.at_done_share * n, deadline)
        if ended >= n or time.monotonic() >= deadline:
            break
        time.sleep(kill.delay_s)
        _kill(run, kill, t0)
    _wait_ended(buyer, n, deadline)
    return time.monotonic() - t0


def _collect(run: _Run, buyer: Client, plans: Sequence[JobPlan]) -> dict[str, Any]:
    """Judge the run from the exchange's records (``chaos_check.verdict``)."""
    with run.exchange.client() as operator:
        audit = list(operator.request("GET", "/v1/ledger/audit"))
    jobs = _paged(buyer, "/v1/jobs")
    v = verdict(
        jobs,
        _events(buyer),
        _paged(buyer, "/v1/usage"),
        audit,
        buyer.wallet(),
        DEPOSIT_FEN,
        {p.name: p.expected for p in plans},
    )
    return asdict(v)


def _orphans(run: _Run) -> dict[str, Any]:
    """Stop the daemons (TERM); count job processes left after every job ended and
    daemons that needed KILL; KILL whatever is left, so nothing outlives the run."""
    bound_s = run.settings.stop_grace_s + 10.0
    deadline = time.monotonic() + bound_s
    while with_env(run.marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = with_env(run.marker)
    daemons: list[tuple[str, AgentProcess | ExchangeProcess]] = [
        *run.agents.items(),
        ("exchange", run.exchange),
    ]
    stubborn = []
    for name, d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
            if d.proc.returncode == -signal.SIGKILL:
                stubborn.append(name)
    after = with_env(run.marker)
    for pid in after:
        _kill_pid(pid)
    return {
        "orphans": len(set(left) | set(after)) + len(stubborn),
        "orphan_job_processes": len(set(left) | set(after)),
        "orphan_daemons": stubborn,
        "orphan_wait_s": bound_s,
    }


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_chaos(cfg: ChaosSettings) -> dict[str, Any]:
    """Run the chaos scenario (see the module docstring); its settings, figures and kills."""
    rng = random.Random(cfg.seed)
    plans, kills = plan_jobs(cfg, rng), plan_kills(cfg, rng)
    timeout_s = cfg.timeout_s if cfg.timeout_s is not None else 600.0 + 3.0 * cfg.jobs
    with contextlib.ExitStack() as stack:
        if cfg.work_dir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="suanli-chaos-")))
        else:
            tmp = cfg.work_dir
            tmp.mkdir(parents=True, exist_ok=False)
        env = {
            "SUANLI_AGENT_HEARTBEAT_INTERVAL_S": f"{cfg.heartbeat_interval_s:g}",
            "SUANLI_AGENT_HEARTBEAT_TIMEOUT_S": f"{cfg.heartbeat_timeout_s:g}",
        }
        ex = ExchangeProcess(tmp / "data", tmp / "exchange.log", cfg.clear_interval_s, env)
        run = _Run(cfg, tmp, f"CHAOS_RUN={uuid.uuid4().hex}", ex)
        try:
            ex.start()
            with ex.client() as operator:
                buyer_t = operator.create_tenant("chaos-lab", [{"name": "u", "role": "buyer"}])
                operator.deposit(buyer_t["id"], DEPOSIT_FEN)
                _start_agents(run, operator)
            with ex.client(str(buyer_t["accounts"][0]["token"]), retries=4) as buyer:
                for p in plans:
                    buyer.submit(_spec(p, run.marker, cfg.stop_grace_s))
                wall_s = _chaos(run, buyer, kills, time.monotonic() + timeout_s)
                figures = _collect(run, buyer, plans)
        finally:
            orphans = _orphans(run)
        logs = {name: a.tail(1500) for name, a in run.agents.items()}
        logs["exchange"] = ex.tail(1500)
    kinds = Counter("exchange" if k["target"] == "exchange" else "agent" for k in run.kills)
    return {
        "settings": asdict(cfg),
        **figures,
        **orphans,
        "kills_done": len(run.kills),
        "exchange_kills": kinds["exchange"],
        "agent_kills": kinds["agent"],
        "outlived_agent": sum(int(k.get("outlived_agent", 0)) for k in run.kills),
        "kills": run.kills,
        "wall_s": wall_s,
        "logs": logs if figures["lost"] or figures["double_billed"] else {},
    }
