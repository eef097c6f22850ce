"""Alembic environment: runs on the connection the service hands over (see ``migrate``)."""

from __future__ import annotations

from alembic import context

from suanli.service.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the service always passes one
    raise RuntimeError("run migrations through suanli.service.migrate.upgrade")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
