"""The database: one SQLAlchemy engine, read and write transactions, dialect quirks.

SQLite (the default, a file in the data directory) runs in WAL mode; its writes are
serialized by a process-wide lock and ``BEGIN IMMEDIATE``, so concurrent requests never
see "database is locked". PostgreSQL (by URL, driven by psycopg 3) runs at READ
COMMITTED; writers take row locks (``SELECT … FOR UPDATE``) and a transaction that loses
a deadlock is retried whole.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "is_unavailable", "normalize_url"]

T = TypeVar("T")

# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock detected.
_RETRY_SQLSTATES = {"40001", "40P01"}
# SQLite primary result codes that say the database cannot be used right now, not that
# the statement is wrong: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_UNAVAILABLE = {5, 6, 7, 8, 10, 13, 14, 15}


def is_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` says the database is unreachable or cannot take writes (server
    down, connection lost, disk full, pool exhausted), so the same request may succeed
    later; False for errors in the statement itself."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) in _SQLITE_UNAVAILABLE
    # psycopg: connection failures (08), lack of resources such as disk (53), shutdown
    # (57), I/O (58) and lost serialization races are all OperationalError.
    return isinstance(exc, (OperationalError, InterfaceError))


def normalize_url(url: str) -> URL:
    """``postgresql://`` → psycopg 3 driver; anything else as given."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u


class Database:
    """Engine plus transaction helpers. ``dialect`` is ``"sqlite"`` or ``"postgresql"``."""

    def __init__(self, url: str, *, pool_size: int = 16) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self.engine = self._make_engine(pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.RLock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _make_engine(self, pool_size: int) -> Engine:
        if self.is_sqlite:
            db = self.url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                _private_sqlite_file(Path(db))
            engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(
            self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; rolled back at the end."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed if the block returns, rolled back if it raises."""
        if self.is_sqlite:
            with self._write_lock, self._sessions() as session:
                session.connection(execution_options={"sqlite_write": True})
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
            return
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def transact(self, fn: Callable[[Session], T], *, attempts: int = 4) -> T:
        """Run ``fn`` in a write transaction; retried whole if PostgreSQL aborts it."""
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return fn(session)
            except (OperationalError, DBAPIError) as exc:
                code = getattr(getattr(exc, "orig", None), "sqlstate", None)
                if code not in _RETRY_SQLSTATES or attempt == attempts - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def _private_sqlite_file(path: Path) -> None:
    """Make the database file (and its folder, if new) the owner's alone before SQLite
    opens it: SQLite gives ``-wal`` and ``-shm`` the database file's mode, so creating
    it 0600 makes all three private. An existing file is tightened too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except PermissionError:  # another user's file: theirs to protect
        pass
    finally:
        os.close(fd)
    for side in ("-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.chmod(f"{path}{side}", 0o600)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module: we emit BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    write = conn.get_execution_options().get("sqlite_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
