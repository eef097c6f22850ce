"""The verdict of a chaos run, from what the exchange says once the dust settles.

Pure: the jobs, their events, the usage records, the ledger audit and the buyer's wallet
go in (as the API returned them); counts come out. Definitions:

- **succeeded**: the job is ``succeeded`` with exactly one ``succeeded`` transition and
  exactly one usage record with exit code 0;
- **failed**: the job is ``failed`` with a non-empty reason (counted per reason);
  **unexpected** counts the jobs whose end is not the one their command was written to
  have (a job meant to succeed that failed, or the reverse);
- **lost**: the job is not over (``pending``, ``placed``, ``running``, ``preempted``);
- **double-billed**: a job with more than one terminal transition, more than one usage
  record of a successful run, an allocation settled twice, or two usage records whose
  billed intervals overlap by more than ``overlap_tolerance_s`` (the same wall time
  paid twice);
- **ledger balanced**: the exchange's own audit is empty (every transaction sums to
  zero, balances equal their entries, each allocation settled at most once, captured ≤
  held), nothing is left in the buyer's escrow, and what the buyer's wallet lost equals
  what its usage records charged;
- **preemptions**: ``preempted`` transitions; **resumed**: succeeded jobs whose last
  run started from a checkpoint step above 0 (the job's own output says so).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Verdict", "verdict"]

TERMINAL = ("succeeded", "failed", "cancelled")
_RESUMED = re.compile(r"resumed at step (\d+)")


@dataclass(frozen=True)
class Verdict:
    jobs: int
    succeeded: int
    failed: int
    failed_reasons: dict[str, int]
    unexpected: list[str]
    lost: list[str]
    double_billed: list[str]
    max_overlap_s: float
    ledger_balanced: bool
    ledger_notes: list[str]
    preemptions: int
    resumed: int
    billed_fen: int
    notes: list[str] = field(default_factory=list)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _overlap_s(usage: Sequence[Mapping[str, Any]]) -> float:
    """The longest stretch two of one job's billed intervals share (0 when none)."""
    spans = sorted((_ts(u["from_at"]), _ts(u["to_at"])) for u in usage)
    worst, reach = 0.0, float("-inf")
    for start, end in spans:
        worst = max(worst, min(reach, end) - start)
        reach = max(reach, end)
    return worst


def _billing_faults(
    name: str,
    to_states: Sequence[str],
    usage: Sequence[Mapping[str, Any]],
    tolerance_s: float,
) -> tuple[list[str], float]:
    faults: list[str] = []
    ends = [s for s in to_states if s in TERMINAL]
    if len(ends) > 1:
        faults.append(f"{name}: ended {len(ends)} times ({', '.join(ends)})")
    ok_runs = sum(1 for u in usage if u.get("exit_code") == 0)
    if ok_runs > 1:
        faults.append(f"{name}: {ok_runs} successful runs billed")
    per_alloc = Counter(str(u["allocation_id"]) for u in usage)
    faults += [f"{name}: allocation {a} billed {n} times" for a, n in per_alloc.items() if n > 1]
    overlap = _overlap_s(usage)
    if overlap > tolerance_s:
        faults.append(f"{name}: billed intervals overlap by {overlap:.1f} s")
    return faults, overlap


def _ledger(
    audit: Sequence[str], wallet: Mapping[str, Any], deposit_fen: int, billed_fen: int
) -> list[str]:
    notes = list(audit)
    if wallet["escrow_fen"] != 0:
        notes.append(f"buyer escrow holds {wallet['escrow_fen']} fen with no work running")
    spent = deposit_fen - int(wallet["wallet_fen"]) - int(wallet["escrow_fen"])
    if spent != billed_fen:
        notes.append(f"buyer spent {spent} fen but its usage records charge {billed_fen}")
    return notes


def verdict(
    jobs: Sequence[Mapping[str, Any]],
    events: Mapping[str, Sequence[Mapping[str, Any]]],
    usage: Sequence[Mapping[str, Any]],
    audit: Sequence[str],
    wallet: Mapping[str, Any],
    deposit_fen: int,
    expected: Mapping[str, str],
    overlap_tolerance_s: float = 1.0,
) -> Verdict:
    """Judge a run (see the module docstring). ``events``: job id → its events;
    ``expected``: job name → the state its command was written to end in."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for u in usage:
        by_job.setdefault(str(u["item_id"]), []).append(u)
    succeeded = failed = preemptions = resumed = 0
    reasons: Counter[str] = Counter()
    unexpected: list[str] = []
    lost: list[str] = []
    double: list[str] = []
    worst = 0.0
    for job in jobs:
        name, state = str(job["name"]), str(job["state"])
        evs = events.get(str(job["id"]), [])
        to = [str(e["to_state"]) for e in evs if e.get("kind") == "transition"]
        mine = by_job.get(str(job["id"]), [])
        preemptions += to.count("preempted")
        faults, overlap = _billing_faults(name, to, mine, overlap_tolerance_s)
        double += faults
        worst = max(worst, overlap)
        if state not in TERMINAL:
            lost.append(f"{name}: {state} ({job['reason']})")
            continue
        if state != expected.get(name):
            unexpected.append(
                f"{name}: {state} ({job['reason']}), meant to be {expected.get(name)}"
            )
        if state == "succeeded":
            once = to.count("succeeded") == 1 and sum(u.get("exit_code") == 0 for u in mine) == 1
            succeeded += once
            if not once:
                double.append(f"{name}: succeeded without exactly one successful billed run")
            last = next((e for e in reversed(evs) if e.get("to_state") == "succeeded"), None)
            m = _RESUMED.search(str(((last or {}).get("data") or {}).get("log_tail", "")))
            resumed += bool(m and int(m.group(1)) > 0)
        elif state == "failed":
            failed += 1
            why = str(job["reason"]).replace(str(job["id"]), "<job>").replace(name, "<job>")
            reasons[why or "(no reason given)"] += 1
    billed = sum(int(u["buyer_fen"]) for u in usage)
    ledger = _ledger(audit, wallet, deposit_fen, billed)
    return Verdict(
        jobs=len(jobs),
        succeeded=succeeded,
        failed=failed,
        failed_reasons=dict(reasons),
        unexpected=unexpected,
        lost=lost,
        double_billed=double,
        max_overlap_s=worst,
        ledger_balanced=not ledger,
        ledger_notes=ledger,
        preemptions=preemptions,
        resumed=resumed,
        billed_fen=billed,
    )
