"""Site agents: sessions and heartbeats on sites, lease tokens and replica endpoints on
allocations, how to run work (env, folders, replica commands) on jobs and services.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.service.tables.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _columns() -> dict[str, list[sa.Column[object]]]:
    """The new columns by table, built afresh for each use (a Column joins one table)."""
    utc = suanli.service.tables.base.UtcDateTime(timezone=True)
    # Every one is nullable: rows written before agents existed stay valid as they are.
    return {
        "sites": [
            sa.Column("agent_session", sa.String(length=40), nullable=True),
            sa.Column("agent_state", sa.String(length=16), nullable=True),
            sa.Column("agent_seen_at", utc, nullable=True),
            sa.Column("agent_info", sa.JSON(), nullable=True),
        ],
        "allocations": [
            sa.Column("lease_token", sa.String(length=40), nullable=True),
            sa.Column("backend_job_id", sa.String(length=100), nullable=True),
            sa.Column("endpoint", sa.String(length=300), nullable=True),
            sa.Column("health", sa.String(length=16), nullable=True),
            sa.Column("health_at", utc, nullable=True),
        ],
        "jobs": [sa.Column("run_spec", sa.JSON(), nullable=True)],
        "services": [
            sa.Column("command", sa.Text(), nullable=True),
            sa.Column("run_spec", sa.JSON(), nullable=True),
        ],
    }


def upgrade() -> None:
    for table, columns in _columns().items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.add_column(column)


def downgrade() -> None:
    for table, columns in _columns().items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(columns):
                batch_op.drop_column(column.name)
