"""Keys: digest lookup, the per-minute bucket and the daily token limit."""

from __future__ import annotations

from suanli.gateway.keys import KeyTable, digest
from suanli.gateway.state import StateView

from .conftest import key_entry, replica, service, state


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_lookup_by_sha256_digest_and_revocation_by_absence() -> None:
    keys = KeyTable(Clock())
    k = key_entry("sk-a", kid="ka")
    keys.load([k])
    assert digest("sk-a") == k.digest and len(k.digest) == 64
    assert keys.lookup("sk-a") == k and keys.lookup("sk-b") is None
    keys.load([])  # revoked: the next state no longer carries it
    assert keys.lookup("sk-a") is None


def test_a_key_is_good_for_its_own_service_only() -> None:
    s1 = service([replica("r1", "http://r1")], id="svc1", name="one")
    s2 = service([replica("r2", "http://r2")], id="svc2", name="two")
    view = StateView(state([s1, s2], [key_entry(service_id="svc1")]))
    k = view.state.keys[0]
    assert view.service_for(k, "one") == s1 and view.service_for(k, "svc1") == s1
    assert view.service_for(k, "two") is None and view.service_for(k, "nope") is None


def test_requests_per_minute_bucket() -> None:
    clock = Clock()
    keys = KeyTable(clock)
    k = key_entry(rpm=3)
    keys.load([k])
    assert [keys.admit(k) for _ in range(3)] == [None, None, None]
    limited = keys.admit(k)
    assert limited is not None and limited.kind == "requests" and limited.retry_after_s == 20
    clock.now += 20.0  # one request's worth refilled
    assert keys.admit(k) is None
    assert keys.admit(k) is not None


def test_tokens_per_day_counts_unacknowledged_usage_until_the_state_has_it() -> None:
    clock = Clock()
    keys = KeyTable(clock)
    k = key_entry(tokens_per_day=1000, tokens_today=900)
    keys.load([k])
    assert keys.admit(k) is None
    keys.metered(k.id, 100)  # this gateway's usage, not yet acknowledged
    limited = keys.admit(k)
    assert limited is not None and limited.kind == "tokens"
    assert 1 <= limited.retry_after_s <= 86_400  # until the next UTC midnight
    keys.acknowledged({k.id: 100})  # recorded at the exchange, not yet in a state
    assert keys.admit(k) is not None
    k = key_entry(tokens_per_day=1000, tokens_today=1000)
    keys.load([k])  # the state has it now
    assert keys.admit(k) is not None
    fresh = key_entry(tokens_per_day=1000, tokens_today=0)  # a new UTC day
    keys.load([fresh])
    assert keys.admit(fresh) is None
