"""Monitoring: computed windows of a model version, and the alerts rules raised.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_windows",
        sa.Column("window_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("profile_digest", sa.String(length=64), nullable=True),
        sa.Column("quality_json", sa.Text(), nullable=True),
        sa.Column("drift_json", sa.Text(), nullable=True),
        sa.Column("performance_json", sa.Text(), nullable=True),
        sa.Column("labelled_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("computed_time", sa.BigInteger(), nullable=False),
        sa.Column("performance_time", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.model_id"],
            name=op.f("fk_monitor_windows_model_id_registered_models"),
        ),
        sa.PrimaryKeyConstraint("window_id", name=op.f("pk_monitor_windows")),
        sa.UniqueConstraint(
            "model_id",
            "version",
            "granularity",
            "start_time",
            name=op.f("uq_monitor_windows_model_id_version_granularity_start_time"),
        ),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("alert_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=250), nullable=False),
        sa.Column("metric", sa.String(length=250), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("window_id", sa.String(length=32), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivered_json", sa.Text(), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.model_id"],
            name=op.f("fk_monitor_alerts_model_id_registered_models"),
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_monitor_alerts")),
    )
    op.create_index(op.f("ix_monitor_alerts_model_id_time"), "monitor_alerts", ["model_id", "time"])


def downgrade() -> None:
    for table in ("monitor_alerts", "monitor_windows"):
        op.drop_table(table)
