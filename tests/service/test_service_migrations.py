"""Migrations run up from an empty database on both dialects; the event log is append-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from suanli.service.db import Database
from suanli.service.migrate import current_revision, downgrade, head_revision, upgrade
from suanli.service.tables import Base


def _check_round_trip(db: Database) -> None:
    assert current_revision(db) is None
    upgrade(db)
    assert current_revision(db) == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    upgrade(db)  # idempotent
    downgrade(db, "base")
    assert not set(Base.metadata.tables) & set(inspect(db.engine).get_table_names())
    upgrade(db)
    with db.write() as s:
        s.execute(
            text(
                "INSERT INTO events (at, subject_kind, subject_id, kind, reason) "
                "VALUES (CURRENT_TIMESTAMP, 'job', 'j1', 'transition', 'submitted')"
            )
        )
    for stmt in ("UPDATE events SET reason = 'rewritten'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), db.write() as s:
            s.execute(text(stmt))
    db.dispose()


def test_sqlite_up_from_empty(tmp_path: Path) -> None:
    _check_round_trip(Database(f"sqlite:///{tmp_path / 'm.db'}"))


def test_postgresql_up_from_empty(pg: Any) -> None:
    _check_round_trip(Database(pg.fresh(migrated=False)))


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.dispose()
