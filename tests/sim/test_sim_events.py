"""The event loop: time order, ties in scheduling order, handler results scheduled."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from suanli.engine.clock import SimClock
from suanli.sim.events import Environment


@dataclass(frozen=True)
class Ev:
    at_h: float
    name: str


def test_ties_break_in_scheduling_order_and_time_order_wins() -> None:
    env: Environment[Ev] = Environment()
    for ev in (Ev(2.0, "c"), Ev(1.0, "a"), Ev(2.0, "d"), Ev(1.0, "b"), Ev(0.5, "first")):
        env.schedule(ev)
    seen: list[tuple[float, str]] = []
    env.run(lambda e: seen.append((e.at_h, e.name)) or [], until_h=10.0)
    # time first; at 1.0 "a" was scheduled before "b", at 2.0 "c" before "d"
    assert seen == [(0.5, "first"), (1.0, "a"), (1.0, "b"), (2.0, "c"), (2.0, "d")]


def test_events_a_handler_returns_run_after_those_already_waiting_at_that_time() -> None:
    env: Environment[Ev] = Environment()
    env.schedule(Ev(1.0, "x"))
    env.schedule(Ev(1.0, "y"))
    seen: list[str] = []

    def handle(e: Ev) -> list[Ev]:
        seen.append(e.name)
        # "x" schedules "z" at the same time: it queues behind "y", which came earlier
        return [Ev(1.0, "z")] if e.name == "x" else []

    assert env.run(handle, until_h=1.0) == 3
    assert seen == ["x", "y", "z"]


def test_the_clock_follows_the_events_and_stops_at_the_horizon() -> None:
    clock = SimClock()
    env: Environment[Ev] = Environment(clock)
    for t in (0.25, 0.5, 3.0):
        env.schedule(Ev(t, f"t{t}"))
    times: list[float] = []
    env.run(lambda e: times.append(clock.now_h()) or [], until_h=1.0)
    assert times == [0.25, 0.5]
    assert clock.now_h() == 0.5
    assert len(env) == 1  # the event at 3.0 h waits beyond the horizon


def test_each_environment_owns_its_counter() -> None:
    a: Environment[Ev] = Environment()
    b: Environment[Ev] = Environment()
    for i in range(3):
        a.schedule(Ev(1.0, f"a{i}"))
    b.schedule(Ev(1.0, "b0"))
    b.schedule(Ev(1.0, "b1"))
    seen: list[str] = []
    b.run(lambda e: seen.append(e.name) or [], until_h=1.0)
    assert seen == ["b0", "b1"]


def test_scheduling_in_the_past_is_refused() -> None:
    env: Environment[Ev] = Environment(SimClock(5.0))
    with pytest.raises(ValueError, match="past"):
        env.schedule(Ev(4.0, "late"))
