"""Process groups: who is still in one, stopping all of them (TERM, grace, KILL), and
starting processes from one long-lived thread.

A job's processes share the process group its leader opened (``start_new_session``).
Zombies are not counted: an orphan that exited may wait long for a PID 1 that reaps late,
and it holds nothing.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

__all__ = ["Spawner", "group_alive", "group_members", "stop_group"]

_PROC = Path("/proc")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in process group ``pgid``; needs /proc (Linux)."""
    members: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in group ``pgid``."""
    if _PROC.is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(
    pgid: int,
    grace_s: float,
    *,
    reap: Callable[[], object] = lambda: None,
    poll_s: float = 0.05,
) -> bool:
    """TERM every process in the group, KILL what is left after ``grace_s``.

    ``reap`` is called while waiting so the caller can collect its own child (the leader),
    which would otherwise linger as a zombie. Returns True if KILL was needed.
    """
    if not _signal(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        reap()
        if not group_alive(pgid):
            return False
        time.sleep(poll_s)
    _signal(pgid, signal.SIGKILL)
    # KILL cannot be caught; wait briefly so callers see the group gone when we return.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        reap()
        if not group_alive(pgid):
            break
        time.sleep(poll_s)
    return True


def _signal(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


_Start = Callable[[], "subprocess.Popen[bytes]"]


class Spawner:
    """Starts processes from one thread that lives as long as this process.

    The kernel's parent-death signal (bubblewrap's ``--die-with-parent``, ``setpriv
    --pdeathsig``) fires when the *thread* that forked a process ends, not only its
    process: work started from a short-lived thread (a job's watcher) would be killed when
    that thread returns. From here it dies with the agent, and only then.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[_Start, Future[subprocess.Popen[bytes]]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name="suanli-spawner", daemon=True)
        self._thread.start()

    def start(self, start: _Start) -> subprocess.Popen[bytes]:
        """Run ``start`` (which makes the ``Popen``) on the spawner thread; its result or
        its exception."""
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._requests.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)
