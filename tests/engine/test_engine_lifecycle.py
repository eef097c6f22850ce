"""Lifecycle transitions, node-level capacity and the clock."""

from __future__ import annotations

import pytest

from suanli.engine.clock import SimClock
from suanli.engine.lifecycle import InvalidTransition, WorkState, check_transition
from suanli.engine.nodes import PoolNodes

W = WorkState


@pytest.mark.parametrize(
    ("frm", "to", "ok"),
    [
        (W.PENDING, W.PLACED, True),
        (W.PLACED, W.RUNNING, True),
        (W.RUNNING, W.SUCCEEDED, True),
        (W.RUNNING, W.PREEMPTED, True),
        (W.PREEMPTED, W.PENDING, True),
        (W.PENDING, W.CANCELLED, True),
        (W.PENDING, W.RUNNING, False),  # must be placed first
        (W.SUCCEEDED, W.CANCELLED, False),  # finished work stays finished
        (W.CANCELLED, W.PENDING, False),
        (W.PREEMPTED, W.RUNNING, False),  # preempted work goes back through the market
    ],
)
def test_transitions(frm: WorkState, to: WorkState, ok: bool) -> None:
    if ok:
        check_transition("j", frm, to)
    else:
        with pytest.raises(InvalidTransition, match=f"from {frm.value} to {to.value}"):
            check_transition("j", frm, to)


def test_terminal_states_hold_no_gpus() -> None:
    for s in W:
        assert not (s.terminal and s.holds_gpus)


def test_pool_nodes_best_fit_and_give_back() -> None:
    nodes = PoolNodes(nodes=3, gpus_per_node=8)
    a = nodes.take((3,))  # node 0: 8 → 5
    b = nodes.take((4,))  # best fit: node 0 (5 free) rather than a whole node → 1 left
    assert a == ((0, 3),) and b == ((0, 4),)
    c = nodes.take((8, 8))  # two whole nodes: 1 and 2
    assert c == ((1, 8), (2, 8))
    assert nodes.free_gpus == 1
    with pytest.raises(ValueError, match="no node with 2 free"):
        nodes.take((2,))
    assert nodes.free_gpus == 1  # a failed take changes nothing
    nodes.give(c)
    assert nodes.free_counts() == (1, 8, 8)


def test_pool_nodes_down_hide_capacity() -> None:
    nodes = PoolNodes(nodes=2, gpus_per_node=4)
    nodes.set_up(False)
    assert nodes.free_gpus == 0 and nodes.free_counts() == ()
    nodes.set_up(True)
    assert nodes.free_gpus == 8


def test_sim_clock_never_goes_back() -> None:
    clock = SimClock(1.0)
    clock.advance_to(2.5)
    assert clock.now_h() == 2.5
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance_to(2.0)
