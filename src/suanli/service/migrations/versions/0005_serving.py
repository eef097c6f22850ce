"""Serving inference: token bids and replica bounds on services, measured demand, the
routing plan per round, inference keys, gateway batches, token usage, service traffic.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import suanli.service.tables.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _service_columns() -> list[sa.Column[object]]:
    zero = sa.text("0")
    return [
        sa.Column("bid_cny_per_m_input_tokens", sa.Float(), nullable=False, server_default=zero),
        sa.Column(
            "bid_cny_per_m_cached_input_tokens", sa.Float(), nullable=False, server_default=zero
        ),
        sa.Column("cached_fraction", sa.Float(), nullable=False, server_default=zero),
        sa.Column("min_replicas", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("max_replicas", sa.Integer(), nullable=True),
        sa.Column("demand_estimates", sa.JSON(), nullable=True),
        sa.Column("planned_demand_rps", sa.JSON(), nullable=True),
    ]


def upgrade() -> None:
    utc = suanli.service.tables.base.UtcDateTime(timezone=True)
    with op.batch_alter_table("services", schema=None) as batch_op:
        for column in _service_columns():
            batch_op.add_column(column)
    op.create_table(
        "service_routes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("city", sa.String(length=60), nullable=False),
        sa.Column("pool_id", sa.String(length=80), nullable=False),
        sa.Column("rps", sa.Float(), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_service_routes_service", "service_routes", ["service_id"])
    op.create_table(
        "inference_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("revoked_at", utc, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_inference_keys_tenant", "inference_keys", ["tenant_id"])
    op.create_index("ix_inference_keys_service_id", "inference_keys", ["service_id"])
    op.create_table(
        "gateway_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=100), nullable=False),
        sa.Column("window_start", utc, nullable=False),
        sa.Column("window_end", utc, nullable=False),
        sa.Column("received_at", utc, nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "token_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("city", sa.String(length=60), nullable=False),
        sa.Column("window_end", utc, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["gateway_batches.batch_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_token_usage_service", "token_usage", ["service_id", "window_end"])
    op.create_index("ix_token_usage_tenant", "token_usage", ["tenant_id", "window_end"])
    op.create_index("ix_token_usage_key", "token_usage", ["key_id", "window_end"])
    op.create_table(
        "service_traffic",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
        sa.Column("city", sa.String(length=60), nullable=False),
        sa.Column("window_start", utc, nullable=False),
        sa.Column("window_end", utc, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("slo_met", sa.Integer(), nullable=False),
        sa.Column("slo_total", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["gateway_batches.batch_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_service_traffic_service", "service_traffic", ["service_id", "window_end"])


def downgrade() -> None:
    op.drop_index("ix_service_traffic_service", table_name="service_traffic")
    op.drop_table("service_traffic")
    for ix in ("ix_token_usage_key", "ix_token_usage_tenant", "ix_token_usage_service"):
        op.drop_index(ix, table_name="token_usage")
    op.drop_table("token_usage")
    op.drop_table("gateway_batches")
    op.drop_index("ix_inference_keys_service_id", table_name="inference_keys")
    op.drop_index("ix_inference_keys_tenant", table_name="inference_keys")
    op.drop_table("inference_keys")
    op.drop_index("ix_service_routes_service", table_name="service_routes")
    op.drop_table("service_routes")
    with op.batch_alter_table("services", schema=None) as batch_op:
        for column in reversed(_service_columns()):
            batch_op.drop_column(column.name)
