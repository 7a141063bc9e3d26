"""Automation: the controller's lease per model, where each model's loop stands, and its timeline.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _model_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["registered_models.model_id"], name=op.f(f"fk_{table}_model_id_registered_models")
    )


def upgrade() -> None:
    op.create_table(
        "automation_leases",
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("expires_time", sa.BigInteger(), nullable=False),
        _model_fk("automation_leases"),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_automation_leases")),
    )
    op.create_table(
        "automation_loops",
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        _model_fk("automation_loops"),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_automation_loops")),
    )
    op.create_table(
        "automation_events",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("loop_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=250), nullable=True),
        sa.Column("token", sa.Integer(), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        _model_fk("automation_events"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_automation_events")),
    )
    op.create_index(
        op.f("ix_automation_events_model_id_event_id"), "automation_events", ["model_id", "event_id"]
    )


def downgrade() -> None:
    for table in ("automation_events", "automation_loops", "automation_leases"):
        op.drop_table(table)
