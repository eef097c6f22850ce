"""Circuit breaker transitions on a fake clock."""

from __future__ import annotations

from suanli.gateway.breaker import Breaker, BreakerParams, Pass, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(clock, BreakerParams(failures=3, cooldown_s=1.0, max_cooldown_s=4.0)), clock


def test_opens_after_n_consecutive_failures_only() -> None:
    b, _ = make()
    b.failure("r", Pass.CLOSED)
    b.failure("r", Pass.CLOSED)
    b.success("r", Pass.CLOSED)  # not consecutive any more
    b.failure("r", Pass.CLOSED)
    b.failure("r", Pass.CLOSED)
    assert b.state("r") is State.CLOSED and b.usable("r")
    b.failure("r", Pass.CLOSED)
    assert b.state("r") is State.OPEN
    assert not b.usable("r") and b.acquire("r") is None


def test_half_open_grants_one_trial_and_closes_on_success() -> None:
    b, clock = make()
    for _ in range(3):
        b.failure("r", Pass.CLOSED)
    clock.now += 1.0
    assert b.state("r") is State.HALF_OPEN and b.due_for_probe() == ["r"]
    assert b.acquire("r") is Pass.TRIAL
    assert b.acquire("r") is None and not b.usable("r") and b.due_for_probe() == []
    b.success("r", Pass.CLOSED)  # a request let through before it opened: proves nothing
    assert b.state("r") is State.HALF_OPEN
    b.success("r", Pass.TRIAL)
    assert b.state("r") is State.CLOSED and b.acquire("r") is Pass.CLOSED


def test_failed_trials_grow_the_cooldown_up_to_the_cap() -> None:
    b, clock = make()
    for _ in range(3):
        b.failure("r", Pass.CLOSED)
    cooldowns = []
    for _ in range(4):
        opened = clock.now
        while b.acquire("r") is None:
            clock.now += 0.25
        cooldowns.append(clock.now - opened)
        b.failure("r", Pass.TRIAL)
    assert cooldowns == [1.0, 2.0, 4.0, 4.0]


def test_an_abandoned_trial_goes_back() -> None:
    b, clock = make()
    for _ in range(3):
        b.failure("r", Pass.CLOSED)
    clock.now += 1.0
    assert b.acquire("r") is Pass.TRIAL
    b.release("r", Pass.TRIAL)
    assert b.acquire("r") is Pass.TRIAL


def test_closing_forgets_the_history() -> None:
    b, clock = make()
    for _ in range(3):
        b.failure("r", Pass.CLOSED)
    clock.now += 1.0
    b.failure("r", b.acquire("r") or Pass.CLOSED)  # reopened for 2 s
    clock.now += 2.0
    b.success("r", b.acquire("r") or Pass.CLOSED)
    for _ in range(3):
        b.failure("r", Pass.CLOSED)
    clock.now += 1.0  # back to the first cooldown
    assert b.acquire("r") is Pass.TRIAL
