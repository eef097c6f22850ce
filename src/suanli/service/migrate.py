"""Schema migrations (Alembic, shipped inside the package): up from empty on every start."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from suanli.service.db import Database

__all__ = ["current_revision", "head_revision", "upgrade"]


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("suanli.service") / "migrations"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent; one transaction per dialect rules)."""
    cfg = _config()
    with db.write() as session:
        cfg.attributes["connection"] = session.connection()
        command.upgrade(cfg, revision)


def downgrade(db: Database, revision: str) -> None:
    cfg = _config()
    with db.write() as session:
        cfg.attributes["connection"] = session.connection()
        command.downgrade(cfg, revision)


def current_revision(db: Database) -> str | None:
    with db.read() as session:
        return MigrationContext.configure(session.connection()).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
