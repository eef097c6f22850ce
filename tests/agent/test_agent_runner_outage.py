"""The agent through an exchange outage, against a scripted exchange (no HTTP) and a
backend that, like ``local``, refuses a second job of the same name.

Found by ``suanli bench chaos`` (seed 4): the exchange was killed just after leasing a job
and before the agent's ``running`` report; the agent, unheard for its heartbeat timeout,
stopped the job and queued ``preempted``, then registered again *before* sending it. The
exchange saw the lease unclaimed and never started, so it offered the same allocation
(same attempt, same job name) to the same agent, whose backend refused the duplicate:
the job **failed** ("the site refused it: … was already submitted here") though nothing
was wrong with it. Now the agent says what its last session left to say before it
registers, so the exchange moves the work on (attempt 2) instead of offering it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from suanli.agent.backend import (
    Capacity,
    Handle,
    JobState,
    JobStatus,
    PoolCapacity,
    SubmitRefused,
    Usage,
    WorkSpec,
)
from suanli.agent.exchange import HeartbeatReply, Lease, Registration, Stale
from suanli.agent.runner import AgentRunner, AgentSettings
from suanli.domain import Fabric
from suanli.sdk import ApiError

INTERVAL_S, TIMEOUT_S = 1.0, 6.0


@dataclass
class _Alloc:
    id: str
    attempt: int
    token: str = ""
    leased: bool = False
    started: bool = False
    ended: bool = False


@dataclass
class ScriptedExchange:
    """One job on one site, with the exchange's rules: a lease not started and not held
    at registration is offered again; a preempted job gets a new allocation (attempt + 1);
    a report with an old token is stale."""

    down: bool = False
    allocs: list[_Alloc] = field(default_factory=lambda: [_Alloc("alloc-1", 1)])
    job_state: str = "placed"
    calls: list[str] = field(default_factory=list)
    heartbeats: list[list[tuple[str, str]]] = field(default_factory=list)
    _tokens: int = 0

    def _call(self, what: str) -> None:
        if self.down:
            raise ApiError("cannot reach the exchange: connection refused")
        self.calls.append(what)

    def register(self, capacity: Any, limitations: Any, held: Any, **kw: Any) -> Registration:
        self._call("register")
        claimed = {a for a, _ in held}
        for a in self.allocs:
            if not a.ended and not a.started and a.id not in claimed:
                a.leased = False  # offered again
        return Registration(
            "session", "s", True, INTERVAL_S, TIMEOUT_S, {"h100": "s/h100"}, {}, (), ()
        )

    def heartbeat(self, session: str, held: Any, replicas: Any = ()) -> HeartbeatReply:
        self._call("heartbeat")
        self.heartbeats.append(list(held))
        return HeartbeatReply(True, (), INTERVAL_S, TIMEOUT_S)

    def lease(self, session: str, limit: int = 100) -> list[Lease]:
        self._call("lease")
        out = []
        for a in self.allocs:
            if not a.ended and not a.leased:
                self._tokens += 1
                a.leased, a.token = True, f"t{self._tokens}"
                out.append(
                    Lease(
                        a.id,
                        a.token,
                        "job",
                        "job-1",
                        "s/h100",
                        "H100",
                        1,
                        1,
                        "x",
                        None,
                        1.0,
                        a.attempt,
                    )
                )
        return out

    def report(self, key: str, body: dict[str, Any]) -> None:
        self._call(f"report {body['state']}")
        a = next(a for a in self.allocs if a.id == body["allocation_id"])
        if a.ended or a.token != body["lease_token"]:
            raise Stale("the allocation ended or was leased again")
        state = str(body["state"])
        if state == "running":
            a.started = True
        else:
            a.ended = True
            self.job_state = state
        if state == "preempted":
            self.job_state = "placed"
            self.allocs.append(_Alloc(f"alloc-{len(self.allocs) + 1}", len(self.allocs) + 1))


class OneNameOnce:
    """A backend that keeps its jobs by name and refuses a name it has seen (``local``)."""

    name = "local"

    def __init__(self) -> None:
        self.names: list[str] = []
        self.cancelled: set[str] = set()
        self.done: set[str] = set()

    def limitations(self) -> tuple[()]:
        return ()

    def discover(self) -> Capacity:
        pool = PoolCapacity("h100", "H100", 8, 8, Fabric.ETHERNET, 8, simulated=True)
        return Capacity("local", (pool,), "test")

    def submit(self, work: WorkSpec) -> Handle:
        if work.job_name in self.names:
            raise SubmitRefused(f"{work.job_name} was already submitted here")
        self.names.append(work.job_name)
        return Handle("local", work.job_name, work.id, work.attempt, work.gpus)

    def status(self, handle: Handle) -> JobStatus:
        if handle.id in self.done:
            return JobStatus(JobState.SUCCEEDED, 0, "exited 0", "")
        if handle.id in self.cancelled:
            return JobStatus(JobState.CANCELLED, None, "cancelled", "")
        return JobStatus(JobState.RUNNING, None, "running", "")

    def cancel(self, handle: Handle) -> None:
        self.cancelled.add(handle.id)

    def usage(self, handle: Handle) -> Usage:
        return Usage(0.0, handle.gpus, None, None, "test")

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


_RUNNERS: list[AgentRunner] = []


@pytest.fixture(autouse=True)
def _shut_down() -> Iterator[None]:
    yield
    while _RUNNERS:
        _RUNNERS.pop().shutdown(cancel_running=False, flush_timeout_s=0)


def _runner(tmp_path: Path, ex: ScriptedExchange, clock: list[float]) -> AgentRunner:
    settings = AgentSettings(site_id="s", state_dir=tmp_path / "state", poll_interval_s=0.1)
    runner = AgentRunner(OneNameOnce(), ex, settings, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    _RUNNERS.append(runner)
    return runner


def _step(runner: AgentRunner, clock: list[float], dt_s: float = 0.5) -> None:
    clock[0] += dt_s
    with contextlib.suppress(ApiError):  # the exchange is down: run() backs off, steps again
        runner.step()


def test_work_stopped_in_an_outage_moves_on_instead_of_failing_as_a_duplicate(
    tmp_path: Path, clock: list[float]
) -> None:
    ex = ScriptedExchange()
    runner = _runner(tmp_path, ex, clock)
    _step(runner, clock)  # register, lease alloc-1 (attempt 1), submit it
    ex.down = True  # killed before the agent's "running" report got through
    while clock[0] < 1000.0 + TIMEOUT_S + 2:
        _step(runner, clock)  # unheard for the timeout: stops the job, queues preempted
    ex.down, ex.calls = False, []
    for _ in range(6):
        _step(runner, clock, 1.1)

    # The exchange heard of the preemption before the new session, and ran attempt 2.
    assert ex.calls.index("report preempted") < ex.calls.index("register"), ex.calls
    assert "report failed" not in ex.calls
    assert runner.backend.names == ["suanli-job-1-1", "suanli-job-1-2"]  # type: ignore[attr-defined]
    assert [(a.attempt, a.started, a.ended) for a in ex.allocs] == [
        (1, True, True),
        (2, True, False),
    ]


class _Pauses:
    """Stands in for ``run``'s stop event: records each pause, stops after ``n``."""

    def __init__(self, n: int, clock: list[float]) -> None:
        self.pauses: list[float] = []
        self.n, self.clock = n, clock

    def is_set(self) -> bool:
        return len(self.pauses) >= self.n

    def wait(self, pause_s: float) -> bool:
        self.pauses.append(pause_s)
        self.clock[0] += pause_s
        return self.is_set()


def test_an_agent_keeps_calling_a_down_exchange_once_per_heartbeat_interval(
    tmp_path: Path, clock: list[float]
) -> None:
    ex = ScriptedExchange()
    runner = _runner(tmp_path, ex, clock)
    _step(runner, clock)  # registered: heartbeats every 1 s, timeout 6 s
    ex.down = True
    stop = _Pauses(60, clock)
    runner.run(stop)  # type: ignore[arg-type]
    # Backing off 0.5 s, then 1 s at most — never up to the 10 s retry ceiling: when the
    # exchange is back, it hears this agent within one interval, long before the timeout.
    backoffs = [p for p in stop.pauses if p != runner.settings.poll_interval_s]
    assert backoffs[0] == 0.5 and max(backoffs) == INTERVAL_S, stop.pauses


def test_work_whose_end_is_undelivered_is_still_claimed_at_heartbeats(
    tmp_path: Path, clock: list[float]
) -> None:
    # The exchange offers again a lease older than an interval that the agent does not
    # claim; work that ended while the exchange was down must not look like that.
    ex = ScriptedExchange()
    runner = _runner(tmp_path, ex, clock)
    _step(runner, clock)  # alloc-1 leased, started
    _step(runner, clock)  # "running" delivered
    runner.backend.done.add("suanli-job-1-1")  # type: ignore[attr-defined]
    ex.down = True
    _step(runner, clock, 0.1)  # ended: "succeeded" queued, not delivered
    assert "alloc-1" not in runner.journal.held and runner.journal.outbox
    ex.down = False
    _step(runner, clock, 1.0)  # heartbeat first, then the report
    assert ex.heartbeats[-1] == [("alloc-1", "t1")]
    assert ex.calls[-1] == "report succeeded" and ex.job_state == "succeeded"


def test_a_stale_report_does_not_stop_the_same_work_leased_again(
    tmp_path: Path, clock: list[float]
) -> None:
    ex = ScriptedExchange()
    runner = _runner(tmp_path, ex, clock)
    _step(runner, clock)  # alloc-1 leased under t1, started
    ex.down = True
    _step(runner, clock)  # "running" (t1) queued, not delivered
    ex.down, ex.allocs[0].leased = False, False  # its lease timed out: offered again
    _step(runner, clock)  # leased again under t2; the t1 report is stale
    assert ex.allocs[0].token == "t2" and runner.journal.held["alloc-1"].token == "t2"
    assert "suanli-job-1-1" not in runner.backend.cancelled  # type: ignore[attr-defined]
