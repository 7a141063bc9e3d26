"""Serving: prediction log segments, feedback labels, deployments and their events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _workspace() -> sa.Column[str]:
    return sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False)


def _model_fk(table: str, *, cascade: bool = False) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"],
        ["registered_models.model_id"],
        name=op.f(f"fk_{table}_model_id_registered_models"),
        ondelete="CASCADE" if cascade else None,
    )


def upgrade() -> None:
    op.create_table(
        "prediction_segments",
        sa.Column("segment_id", sa.String(length=32), nullable=False),
        _workspace(),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("blob_digest", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        _model_fk("prediction_segments"),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_prediction_segments")),
    )
    op.create_index(
        op.f("ix_prediction_segments_model_id_version_start_time"),
        "prediction_segments",
        ["model_id", "version", "start_time"],
    )
    op.create_index(
        op.f("ix_prediction_segments_model_id_end_time"), "prediction_segments", ["model_id", "end_time"]
    )
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Integer(), autoincrement=True, nullable=False),
        _workspace(),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=True),
        sa.Column("label_json", sa.Text(), nullable=False),
        sa.Column("received_time", sa.BigInteger(), nullable=False),
        _model_fk("feedback"),
        sa.PrimaryKeyConstraint("feedback_id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_prediction_id"), "feedback", ["prediction_id"])
    op.create_index(op.f("ix_feedback_model_id_received_time"), "feedback", ["model_id", "received_time"])
    op.create_table(
        "deployments",
        sa.Column("model_id", sa.String(length=32), nullable=False),
        _workspace(),
        sa.Column("champion", sa.String(length=250), nullable=False),
        sa.Column("challenger", sa.String(length=250), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("sticky_key", sa.String(length=250), nullable=True),
        sa.Column("limits_json", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=250), nullable=True),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        _model_fk("deployments", cascade=True),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_deployments")),
    )
    op.create_table(
        "deployment_events",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        _workspace(),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=True),
        sa.Column("user_name", sa.String(length=250), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        _model_fk("deployment_events"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_deployment_events")),
    )
    op.create_index(op.f("ix_deployment_events_model_id_time"), "deployment_events", ["model_id", "time"])


def downgrade() -> None:
    for table in ("deployment_events", "deployments", "feedback", "prediction_segments"):
        op.drop_table(table)
