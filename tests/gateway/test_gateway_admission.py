"""Back-pressure: slots per replica, the FIFO queue, and the deadline that ends in a 429."""

from __future__ import annotations

import asyncio

import pytest

from suanli.gateway.admission import Admission, Full, queue_deadline_s
from suanli.gateway.routing import Candidate

from .conftest import replica


def cand(rid: str, mc: int = 1) -> Candidate:
    return Candidate(replica(rid, f"http://{rid}", mc=mc), rtt_ms=5.0, in_plan=True)


def test_the_deadline_is_what_the_ttft_budget_leaves() -> None:
    assert queue_deadline_s(1000, 300, 50, floor_s=0.05) == pytest.approx(0.65)
    assert queue_deadline_s(100, 300, 50, floor_s=0.05) == 0.05


def test_slots_up_to_max_concurrency_then_the_next_candidate() -> None:
    adm = Admission()
    a, b = cand("a", mc=2), cand("b", mc=1)
    assert [adm.try_acquire([a, b]) for _ in range(4)] == [a, a, b, None]
    adm.release("a")
    assert adm.try_acquire([a, b]) == a
    assert adm.in_flight == {"a": 2, "b": 1}


def test_a_full_queue_answers_full_at_the_deadline() -> None:
    async def run() -> Full:
        adm = Admission()
        a = cand("a")
        assert adm.try_acquire([a]) == a
        with pytest.raises(Full) as err:
            await adm.acquire([a], timeout_s=0.05)
        assert adm.queued == 0 and adm.in_flight == {"a": 1}
        return err.value

    full = asyncio.run(run())
    assert full.retry_after_s >= 1 and full.waited_s >= 0.04


def test_freed_slots_go_to_waiters_first_come_first_served() -> None:
    async def run() -> list[str]:
        adm = Admission()
        a = cand("a")
        adm.try_acquire([a])
        order: list[str] = []
        queued = asyncio.Event()

        async def wait(name: str) -> None:
            task = asyncio.ensure_future(adm.acquire([a], timeout_s=10))
            await asyncio.sleep(0)
            queued.set()
            await task
            order.append(name)

        first = asyncio.create_task(wait("first"))
        await queued.wait()
        queued.clear()
        second = asyncio.create_task(wait("second"))
        await queued.wait()
        assert adm.queued == 2
        assert adm.try_acquire([a]) is None  # a newcomer does not jump the queue
        adm.release("a")
        await first
        assert order == ["first"] and adm.queued == 1 and adm.in_flight == {"a": 1}
        adm.release("a")
        await second
        adm.release("a")
        assert adm.in_flight == {}
        return order

    assert asyncio.run(run()) == ["first", "second"]


def test_a_slot_freed_on_any_candidate_serves_the_waiter() -> None:
    async def run() -> str:
        adm = Admission()
        a, b = cand("a"), cand("b")
        adm.try_acquire([a])
        adm.try_acquire([b])
        task = asyncio.create_task(adm.acquire([a, b], timeout_s=10))
        await asyncio.sleep(0)
        adm.release("b")
        return (await task).rid

    assert asyncio.run(run()) == "b"


def test_a_raised_limit_serves_waiters_at_once() -> None:
    async def run() -> str:
        adm = Admission()
        a = cand("a")
        adm.try_acquire([a])
        task = asyncio.create_task(adm.acquire([a], timeout_s=10))
        await asyncio.sleep(0)
        adm.set_limits({"a": 2})
        got = await task
        assert adm.in_flight == {"a": 2}
        return got.rid

    assert asyncio.run(run()) == "a"


def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    async def run() -> dict[str, int]:
        adm = Admission()
        a = cand("a")
        adm.try_acquire([a])
        task = asyncio.create_task(adm.acquire([a], timeout_s=10))
        await asyncio.sleep(0)
        adm.release("a")  # handed to the waiter …
        task.cancel()  # … which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await task
        return adm.in_flight

    assert asyncio.run(run()) == {}
