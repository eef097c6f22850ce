"""The lifecycle of a piece of work and its allowed transitions.

::

    pending → placed → running → succeeded | failed | cancelled | preempted
                 │         │                                        │
                 └─────────┴──→ cancelled / failed / preempted      └──→ pending (re-placed)

Every transition carries a reason a buyer can read (the engine's reasons, unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from suanli.errors import SuanliError

__all__ = ["InvalidTransition", "Transition", "WorkState", "check_transition"]


class WorkState(StrEnum):
    PENDING = "pending"
    PLACED = "placed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        return self in (WorkState.SUCCEEDED, WorkState.FAILED, WorkState.CANCELLED)

    @property
    def holds_gpus(self) -> bool:
        return self in (WorkState.PLACED, WorkState.RUNNING)


_ALLOWED: dict[WorkState, frozenset[WorkState]] = {
    WorkState.PENDING: frozenset({WorkState.PLACED, WorkState.CANCELLED, WorkState.FAILED}),
    WorkState.PLACED: frozenset(
        {WorkState.RUNNING, WorkState.CANCELLED, WorkState.FAILED, WorkState.PREEMPTED}
    ),
    WorkState.RUNNING: frozenset(
        {WorkState.SUCCEEDED, WorkState.FAILED, WorkState.CANCELLED, WorkState.PREEMPTED}
    ),
    WorkState.PREEMPTED: frozenset({WorkState.PENDING, WorkState.CANCELLED}),
    WorkState.SUCCEEDED: frozenset(),
    WorkState.FAILED: frozenset(),
    WorkState.CANCELLED: frozenset(),
}


class InvalidTransition(SuanliError):
    """A state change the lifecycle does not allow (e.g. cancelling finished work)."""


def check_transition(item_id: str, frm: WorkState, to: WorkState) -> None:
    if to not in _ALLOWED[frm]:
        raise InvalidTransition(f"{item_id}: cannot go from {frm.value} to {to.value}")


@dataclass(frozen=True, slots=True)
class Transition:
    item_id: str
    at_h: float
    frm: WorkState
    to: WorkState
    reason: str
    pool_id: str | None = None
