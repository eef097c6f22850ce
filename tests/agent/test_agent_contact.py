"""The agent's side of the heartbeat timeout (``contact``), on a clock the test moves."""

from __future__ import annotations

from suanli.agent.contact import Contact


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_lease_expires_a_timeout_after_the_last_answered_call_was_sent() -> None:
    clock = Clock()
    contact = Contact(clock)
    assert contact.expired_for_s() is None  # never heard: nothing to expire
    contact.answered(sent=100.0, interval_s=5.0, timeout_s=6.0)
    # At least three heartbeats per timeout: 6 / 3 = 2 s, not the 5 s suggested.
    assert contact.interval_s == 2.0 and contact.next_heartbeat == 102.0
    clock.t = 104.0
    contact.heard(sent=103.0)  # a lease sent at 103 was answered (late, at 104)
    contact.heard(sent=101.0)  # an older call answered later moves nothing back
    clock.t = 108.9
    assert contact.expired_for_s() is None  # 5.9 s since 103: the exchange may still wait
    clock.t = 109.0
    # 6 s since the send: the exchange, which heard it no earlier, may sweep from now on.
    assert contact.expired_for_s() == 6.0


def test_a_heartbeat_is_due_an_interval_after_the_answer() -> None:
    clock = Clock()
    contact = Contact(clock)
    assert contact.heartbeat_due()
    clock.t = 110.0
    contact.answered(sent=109.0, interval_s=1.0, timeout_s=30.0)
    assert not contact.heartbeat_due()
    clock.t = 111.0
    assert contact.heartbeat_due()
