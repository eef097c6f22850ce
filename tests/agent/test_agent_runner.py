"""The site agent against a live exchange on loopback, with the ``local`` backend: real
HTTP, real processes. The exchange clears every 0.2 s; agents heartbeat every 0.3 s and a
site silent for 2 s is taken down.

Market: one site per test in Shanghai, 4 simulated H100s on one node at a reserve of 5
yuan/GPU-h; jobs bid 12 per reference GPU-hour. Replicas are placed for a billing horizon
of 0.003 h (10.8 s) at a time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from suanli.agent.exchange import ExchangeLink
from suanli.agent.local import local_backend
from suanli.agent.runner import AgentRunner, AgentSettings
from suanli.bench._procscan import with_env
from suanli.sdk import Client
from suanli.service.app import bootstrap, create_app
from suanli.service.settings import ServiceSettings

INVENTORY = "pools:\n  - {gpu: H100, count: 4, simulated: true}\n"
SUANLI = str(Path(sys.executable).parent / "suanli")
WAIT_S = 30.0
HORIZON_H = 0.003

pytestmark = [
    pytest.mark.slow,  # a live exchange and real processes: seconds per test
    pytest.mark.requires("bwrap"),  # local work runs sandboxed
]


@dataclass
class Live:
    url: str
    operator: Client
    seller_token: str
    buyer: Client
    tmp: Path

    def job(self, command: str, gpus: int = 1, **extra: Any) -> str:
        spec = {
            "kind": "job",
            "name": "t",
            "command": command,
            "resources": {"gpus": gpus},
            # 0.05 reference GPU-hours per GPU: a plan of 180 s, far longer than any run.
            "work_ref_gpu_hours": 0.05 * gpus,
            "bid_cny_per_ref_gpu_hour": 12.0,
            "data": {"origin_city": "Shanghai"},
            **extra,
        }
        return str(self.buyer.submit(spec)["id"])

    def state(self, job_id: str) -> str:
        return str(self.buyer.job(job_id)["state"])

    def audit(self) -> list[str]:
        return list(self.operator.request("GET", "/v1/ledger/audit"))


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    """The exchange; a test may ask for another heartbeat timeout (indirect parameter)."""
    settings = ServiceSettings(
        data_dir=tmp_path / "exchange",
        clear_interval_s=0.2,
        agent_heartbeat_interval_s=0.3,
        agent_heartbeat_timeout_s=getattr(request, "param", 2.0),
        service_horizon_h=HORIZON_H,
    )
    app = create_app(settings)
    token = bootstrap(app)
    assert token
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    op = Client(url, token)
    seller = op.create_tenant("dc", [{"name": "agent", "role": "seller"}])
    buyer = op.create_tenant("lab", [{"name": "u", "role": "buyer"}])
    op.deposit(buyer["id"], 1_000_000)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    b = Client(url, buyer["accounts"][0]["token"])
    yield Live(url, op, seller["accounts"][0]["token"], b, tmp_path)
    b.close()
    op.close()
    srv.should_exit = True
    thread.join(10)
    sock.close()


@dataclass
class ThreadAgent:
    runner: AgentRunner
    stop: threading.Event
    thread: threading.Thread
    client: Client

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.runner.shutdown(cancel_running=True, flush_timeout_s=5)
        self.client.close()


@pytest.fixture
def agent(live: Live) -> Iterator[ThreadAgent]:
    """A local agent in a thread of this process, serving site ``t-site``."""
    a = _thread_agent(live, live.url, "t-site")
    yield a
    a.close()


def _thread_agent(live: Live, url: str, site_id: str) -> ThreadAgent:
    backend = local_backend(
        {"runs_dir": str(live.tmp / "runs"), "inventory": str(live.tmp / "inventory.yaml")}
    )
    client = Client(url, live.seller_token, retries=1)
    settings = AgentSettings(
        site_id=site_id,
        state_dir=live.tmp / site_id,
        city="Shanghai",
        reserve_cny_per_gpu_hour=5.0,
        poll_interval_s=0.1,
        lease_interval_s=0.1,
    )
    runner = AgentRunner(backend, ExchangeLink(client, site_id), settings)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    return ThreadAgent(runner, stop, thread, client)


def _ran_s(job_id: str) -> float:
    """How long the job's oldest process has run (what a site meters), 0 if none."""
    ticks, uptime_s = os.sysconf("SC_CLK_TCK"), float(Path("/proc/uptime").read_text().split()[0])
    ages = []
    for pid in _processes_of(job_id):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ages.append(uptime_s - int(stat[stat.rfind(")") + 2 :].split()[19]) / ticks)
    return max(ages, default=0.0)


def test_a_job_runs_as_a_local_process_and_is_billed_from_backend_usage(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    job = live.job(
        'echo "cvd=$CUDA_VISIBLE_DEVICES attempt=$SUANLI_ATTEMPT foo=$FOO cwd=$(pwd)" '
        '> "$SUANLI_CHECKPOINT_DIR/seen"; sleep 0.5; echo finished',
        gpus=2,
        env={"FOO": "bar"},
        working_dir="wd",
        checkpoint={"every_h": 0.01, "dir": "ckpt"},
    )
    wait_until(lambda: live.state(job) == "succeeded", WAIT_S, "the job to succeed")
    # Named folders are the work's own, under the site's runs folder.
    seen = (live.tmp / "runs" / job / "ckpt" / "seen").read_text().strip()
    # Two GPUs of the four, the spec's env, working dir and checkpoint dir.
    assert seen == f"cvd=0,1 attempt=1 foo=bar cwd={live.tmp / 'runs' / f'suanli-{job}-1' / 'wd'}"
    [use] = live.buyer.usage()
    backend_usage = use["details"]["backend_usage"]
    assert backend_usage["source"] == "local: agent clock"
    assert backend_usage["gpus"] == 2 and backend_usage["gpu_seconds"] >= 1.0  # 2 × ≥ 0.5 s
    assert use["gpu_hours"] == pytest.approx(backend_usage["gpu_seconds"] / 3600)
    events = live.buyer.events(job)
    assert [e["to_state"] for e in events] == ["pending", "placed", "running", "succeeded"]
    assert events[-1]["data"]["log_tail"] == "finished"
    assert events[2]["data"]["site_id"] == "t-site"
    assert live.audit() == []


def test_a_failing_job_reports_its_exit_code_and_log(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    job = live.job("echo 'out of memory' >&2; exit 3")
    wait_until(lambda: live.state(job) == "failed", WAIT_S, "the job to fail")
    got = live.buyer.job(job)
    assert got["exit_code"] == 3
    assert got["reason"] == "exited 3 (exit code 3)"
    last = live.buyer.events(job)[-1]
    assert last["data"]["log_tail"] == "[stderr.log]\nout of memory"


def test_a_cancelled_job_is_killed_on_the_site(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    job = live.job("exec sleep 600")
    wait_until(lambda: live.state(job) == "running", WAIT_S, "the job to run")
    wait_until(lambda: _processes_of(job), WAIT_S, "the job's processes")
    live.buyer.cancel(job)
    # The next heartbeat brings a stop order; the agent kills the sandbox.
    wait_until(lambda: not _processes_of(job), WAIT_S, "the cancelled job's processes to end")
    assert live.state(job) == "cancelled"
    assert live.audit() == []


def test_image_only_work_fails_with_the_reason(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    spec = {
        "kind": "job",
        "name": "img",
        "image": "pytorch/pytorch:2.4.0",
        "resources": {"gpus": 1},
        "work_ref_gpu_hours": 0.05,
        "bid_cny_per_ref_gpu_hour": 12.0,
        "data": {"origin_city": "Shanghai"},
    }
    job = str(live.buyer.submit(spec)["id"])
    wait_until(lambda: live.state(job) == "failed", WAIT_S, "the image-only job to fail")
    assert live.buyer.job(job)["reason"].startswith("no command to run; images are not pulled")


WEB_SERVICE = {
    "kind": "service",
    "name": "web",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 2},
    "tokens": {"prompt": 500, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    # 2 req/s × 250 tokens × 3600 s × 50 yuan/M = 90 yuan/h ≫ 5 yuan/GPU-h.
    "bid_cny_per_m_output_tokens": 50,
    "command": f"exec {sys.executable} -m http.server $PORT --bind 127.0.0.1",
    "health_path": "/",
}


def test_a_replica_serves_reports_its_endpoint_and_health_and_stops(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    svc = live.buyer.submit(WEB_SERVICE)

    def replica() -> dict[str, Any] | None:
        reps = live.buyer.service(svc["id"])["replicas"]
        return reps[0] if reps else None

    wait_until(
        lambda: (r := replica()) is not None and r["health"] == "healthy",
        WAIT_S,
        "the replica to answer its health probe",
    )
    rep = replica()
    assert rep is not None and rep["endpoint"].startswith("http://127.0.0.1:")
    endpoint = rep["endpoint"]
    assert httpx.get(endpoint + "/", timeout=5).status_code == 200
    live.buyer.cancel(svc["id"])  # stop the service: its replica is stopped on the site

    def down() -> bool:
        try:
            socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), 0.5).close()
        except OSError:
            return True
        return False

    wait_until(down, WAIT_S, "the stopped replica's server to go away")
    kinds = [e["kind"] for e in live.buyer.why(svc["id"])["events"]]
    assert kinds[:4] == ["submitted", "placed", "replica-running", "replica-health"]


def test_a_replica_outlives_its_billing_horizon_by_handover(
    live: Live, agent: ThreadAgent, wait_until: Callable[..., None]
) -> None:
    svc = live.buyer.submit(WEB_SERVICE)

    def replicas() -> list[dict[str, Any]]:
        return list(live.buyer.service(svc["id"])["replicas"])

    wait_until(
        lambda: [r["health"] for r in replicas()] == ["healthy"], WAIT_S, "a healthy replica"
    )
    [first] = replicas()

    # The horizon (10.8 s) ends; the next round places the service again on the same pool
    # and that placement takes the running replica over: same endpoint, no restart.
    def taken_over() -> bool:
        reps = replicas()
        return (
            bool(reps)
            and reps[0]["allocation_id"] != first["allocation_id"]
            and bool(reps[0]["endpoint"])
        )

    wait_until(taken_over, WAIT_S, "the replica's next placement to take it over")
    [second] = replicas()
    assert second["endpoint"] == first["endpoint"]
    events = live.buyer.why(svc["id"])["events"]
    took = [e for e in events if e["kind"] == "replica-running" and "took over" in e["reason"]]
    assert took and took[0]["data"]["allocation_id"] == second["allocation_id"]
    # One replica process all along: started once, then taken over; it still answers.
    assert sum(e["kind"] == "replica-running" for e in events) == 2
    assert httpx.get(first["endpoint"] + "/", timeout=5).status_code == 200
    live.buyer.cancel(svc["id"])
    assert live.audit() == []


# ----- an agent process killed and started again -----------------------------------------


def _agent_process(live: Live, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return _popen(live, err)


def _popen(live: Live, err: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            SUANLI,
            "agent",
            "--exchange",
            live.url,
            "--token",
            live.seller_token,
            "--backend",
            "local",
            "--site",
            "p-site",
            "--city",
            "Shanghai",
            "--reserve",
            "5",
            "--inventory",
            str(live.tmp / "inventory.yaml"),
            "--state-dir",
            str(live.tmp / "p-agent"),
            "--poll-interval",
            "0.1",
            "--lease-interval",
            "0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


# Attempt 1 sleeps; later attempts finish at once.
TWO_ATTEMPTS = 'if [ "$SUANLI_ATTEMPT" = 1 ]; then exec sleep 600; fi; echo attempt $SUANLI_ATTEMPT'
ATTEMPTS_CHECKPOINTED = {"every_h": 1.0}


def test_a_killed_agents_work_dies_with_it_and_runs_again(
    live: Live, wait_until: Callable[..., None]
) -> None:
    log = live.tmp / "agent.log"
    proc = _agent_process(live, log)
    try:
        job = live.job(TWO_ATTEMPTS, checkpoint=ATTEMPTS_CHECKPOINTED)
        wait_until(lambda: live.state(job) == "running", WAIT_S, "attempt 1 to run")
        wait_until(lambda: _processes_of(job), WAIT_S, "attempt 1's processes")
        _kill(proc)
        # No orphan: the kernel kills the sandbox with its agent (--die-with-parent).
        wait_until(lambda: not _processes_of(job), 5.0, "attempt 1 to die with its agent")
        # Silent for 2 s: the site goes down and the job waits to be placed again.
        wait_until(lambda: live.state(job) == "pending", WAIT_S, "the site to be taken down")
        proc = _agent_process(live, log)
        wait_until(lambda: live.state(job) == "succeeded", WAIT_S, "attempt 2 to finish")
    finally:
        _kill(proc)
    events = live.buyer.events(job)
    assert [e["to_state"] for e in events] == [
        "pending",
        "placed",
        "running",
        "preempted",
        "pending",
        "placed",
        "running",
        "succeeded",
    ]
    assert events[3]["reason"].startswith("site p-site down: agent silent for")
    assert events[-1]["data"]["log_tail"] == "attempt 2"
    usage = live.buyer.usage()
    assert len(usage) == len({u["allocation_id"] for u in usage}) == 2
    assert live.audit() == []


@pytest.mark.parametrize("live", [10.0], indirect=True)  # a restart well within the timeout
def test_an_agent_restarted_quickly_gives_its_dead_local_work_back(
    live: Live, wait_until: Callable[..., None]
) -> None:
    log = live.tmp / "agent.log"
    proc = _agent_process(live, log)
    try:
        job = live.job(TWO_ATTEMPTS, checkpoint=ATTEMPTS_CHECKPOINTED)
        wait_until(lambda: live.state(job) == "running", WAIT_S, "attempt 1 to run")
        wait_until(lambda: _processes_of(job), WAIT_S, "attempt 1's processes")
        wait_until(lambda: _ran_s(job) >= 0.5, WAIT_S, "attempt 1 to have run 0.5 s")
        killed_at = datetime.now(UTC)
        _kill(proc)
        proc = _agent_process(live, log)  # back before the 10 s timeout
        wait_until(lambda: live.state(job) == "succeeded", WAIT_S, "attempt 2 to finish")
    finally:
        _kill(proc)
    events = live.buyer.events(job)
    preempted = next(e for e in events if e["to_state"] == "preempted")
    assert preempted["reason"] == "site p-site: its agent registered again without this work"
    # Billed to the site's last heartbeat before the kill: what ran is paid, no more.
    first = min(live.buyer.usage(), key=lambda u: u["from_at"])
    assert first["gpu_hours"] > 0
    assert datetime.fromisoformat(first["to_at"]) <= killed_at
    assert live.audit() == []


def test_an_agent_cut_off_from_the_exchange_stops_its_work_when_the_lease_expires(
    live: Live, wait_until: Callable[..., None]
) -> None:
    with _Proxy(live.url) as proxy:
        agent = _thread_agent(live, proxy.url, "cut-site")
        try:
            job = live.job(TWO_ATTEMPTS, checkpoint=ATTEMPTS_CHECKPOINTED)
            wait_until(lambda: live.state(job) == "running", WAIT_S, "attempt 1 to run")
            wait_until(lambda: _processes_of(job), WAIT_S, "attempt 1's processes")
            proxy.cut()
            # The exchange takes the site down after 2 s of silence; the agent, cut off
            # as long, stops attempt 1 rather than run it beside the next placement.
            wait_until(lambda: not _processes_of(job), WAIT_S, "attempt 1 to be stopped")
            wait_until(lambda: live.state(job) == "pending", WAIT_S, "the site to go down")
            proxy.mend()
            wait_until(lambda: live.state(job) == "succeeded", WAIT_S, "attempt 2 to finish")
        finally:
            agent.close()
    assert live.audit() == []


def _processes_of(work_id: str) -> list[int]:
    """Live host pids of a work's job, its sandbox's included."""
    return with_env(f"SUANLI_WORK_ID={work_id}")


class _Proxy:
    """A TCP proxy to the exchange that can be cut (connections refused and dropped) and
    mended: a network partition between an agent and the exchange."""

    def __init__(self, target_url: str) -> None:
        host, port = target_url.removeprefix("http://").split(":")
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._cut = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> _Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self.cut()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def mend(self) -> None:
        self._cut.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_the_agent_imports_neither_fastapi_nor_sqlalchemy() -> None:
    code = (
        "import sys, suanli.agent.runner, suanli.agent.embedded, suanli.cli.agent_cmd; "
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'starlette') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loopback only: a proxy in the environment must not see the agent's calls.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
