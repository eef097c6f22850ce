"""The clearing loop: every N seconds, one round — run by exactly one process.

Before each round the leader sweeps sites whose agents went silent (``agents``): their
work is preempted then, so the same round places it again elsewhere. Silence is only
judged once this process has led for a whole heartbeat timeout: while no exchange was
listening (it was down, or restarting), agents could not be heard, and an agent that
calls within one timeout of the exchange's return keeps its site and its work. A site
whose agent is really gone is thus taken down at most two timeouts after its last call.

Leadership: on PostgreSQL a session-level ``pg_try_advisory_lock`` held on a dedicated
connection (released by the server if the process dies); on SQLite an exclusive
``flock`` on a file beside the database. A follower keeps trying, so another process
takes over within one interval of the leader's exit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, text

from suanli.service.agent_session import sweep_silent_sites
from suanli.service.clearing import RoundSummary, run_round
from suanli.service.db import Database
from suanli.service.runtime import Runtime

__all__ = ["ADVISORY_KEY", "ClearingLoop", "LeaderLock", "leader_lock_for"]

log = logging.getLogger("suanli.service.loop")

# "suanli" in ASCII: the advisory lock key of the clearing loop.
ADVISORY_KEY = 0x7375616E6C69


class LeaderLock(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class PgLeaderLock:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection died: so did the lock
                self._drop()
        conn = self.db.engine.connect()
        got = bool(
            conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        )
        conn.commit()
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing a dead leader connection failed", exc_info=True)
            self._conn = None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                self._conn.commit()
            finally:
                self._drop()


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private like the database beside it (created 0600, whatever the umask).
        f = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class _ThreadLock:
    """In-memory SQLite: one process by construction."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def leader_lock_for(db: Database) -> LeaderLock:
    if not db.is_sqlite:
        return PgLeaderLock(db)
    path = db.url.database
    if not path or path == ":memory:":
        return _ThreadLock()
    return FileLeaderLock(Path(path + ".clearing.lock"))


class ClearingLoop:
    """A daemon thread that clears a round every ``interval_s`` while it is the leader."""

    def __init__(
        self,
        rt: Runtime,
        interval_s: float,
        *,
        lock: LeaderLock | None = None,
        on_round: Callable[[RoundSummary], None] | None = None,
    ) -> None:
        self.rt = rt
        self.interval_s = interval_s
        self.lock = lock or leader_lock_for(rt.db)
        self.on_round = on_round
        self.is_leader = False
        self._leading_since: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="suanli-clearing", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.lock.release()
        self.is_leader = False
        self._leading_since = None

    def _sweep(self) -> None:
        rt = self.rt
        timeout_s = rt.settings.agent_heartbeat_timeout_s
        now = rt.clock.now()
        if (now - (self._leading_since or now)).total_seconds() < timeout_s:
            return  # agents had no exchange to call: their silence is not theirs yet
        down = rt.db.transact(lambda s: sweep_silent_sites(s, now, timeout_s))
        if down:
            rt.serving_changes.bump()  # their replicas leave the gateways' state
        for site_id in down:
            log.warning(
                "site %s taken down: its agent missed heartbeats for %g s", site_id, timeout_s
            )

    def tick(self) -> RoundSummary | None:
        """One turn of the loop: as the leader, sweep silent sites and clear a round;
        None when another process leads."""
        was_leader, self.is_leader = self.is_leader, self.lock.acquire()
        if not self.is_leader:
            self._leading_since = None
            return None
        if not was_leader:
            self._leading_since = self.rt.clock.now()
        self._sweep()
        summary = run_round(self.rt)
        if self.on_round is not None:
            self.on_round(summary)
        return summary

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                # A failed round rolled back whole; the next one starts from the rows.
                log.exception("clearing round failed")
                self.rt.metrics.rounds.labels("failed").inc()
            self._stop.wait(self.interval_s)
