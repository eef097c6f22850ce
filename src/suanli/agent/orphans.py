"""Work the ``local`` backend started before the agent restarted: found and stopped.

Sandboxed work dies with its agent (``--die-with-parent``); work run with
``--unsafe-no-sandbox`` may leave processes behind. Every job's processes carry its
``SUANLI_WORK_ID`` / ``SUANLI_ATTEMPT`` / ``SUANLI_BACKEND=local`` in their environment and
run in their own process group, so a restarted agent finds them there (Linux ``/proc``)
and stops their groups.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from suanli.agent._proc import stop_group
from suanli.agent.backend import Handle

__all__ = ["Orphan", "find_orphans", "stop_leftovers", "stop_orphans"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Orphan:
    """A job's process groups still alive, and when its oldest process started (Unix s)."""

    pgids: tuple[int, ...]
    started_at_s: float | None


def find_orphans(work_id: str, attempt: int, backend: str = "local") -> Orphan:
    """The live process groups of one attempt of one work (empty when none is left)."""
    want = {
        f"SUANLI_WORK_ID={work_id}".encode(),
        f"SUANLI_ATTEMPT={attempt}".encode(),
        f"SUANLI_BACKEND={backend}".encode(),
    }
    pgids: set[int] = set()
    oldest: float | None = None
    if not _PROC.is_dir():
        return Orphan((), None)
    boot_s, ticks = _boot_time_s(), os.sysconf("SC_CLK_TCK")
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone, or not ours to read
        if not want <= env:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        pgids.add(int(fields[2]))
        started = boot_s + int(fields[19]) / ticks
        oldest = started if oldest is None else min(oldest, started)
    return Orphan(tuple(sorted(pgids)), oldest)


def stop_orphans(orphan: Orphan, grace_s: float) -> None:
    """TERM each group, KILL what is left after ``grace_s``."""
    for pgid in orphan.pgids:
        stop_group(pgid, grace_s)


def stop_leftovers(handle: Handle, grace_s: float) -> None:
    """Stop whatever is left of a local job's processes (none for sandboxed work, which
    died with its agent)."""
    stop_orphans(find_orphans(handle.work_id, handle.attempt, handle.backend), grace_s)


def _boot_time_s() -> float:
    try:
        for line in (_PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return time.time() - time.monotonic()
