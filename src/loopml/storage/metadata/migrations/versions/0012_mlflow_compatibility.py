"""MLflow compatibility: experiment tags, MLflow 3's logged models and their files, the trust mark and MLflow
source of model versions, and the record of what `loopml import mlflow` copied.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _workspace() -> sa.Column[str]:
    return sa.Column("workspace_id", sa.String(length=64), server_default="default", nullable=False)


def upgrade() -> None:
    op.create_table(
        "experiment_tags",
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        _workspace(),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_experiment_tags_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name=op.f("pk_experiment_tags")),
    )
    op.create_table(
        "logged_models",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        _workspace(),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("model_type", sa.String(length=250), nullable=True),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.Column("lifecycle", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("tags_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("params_json", sa.Text(), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_logged_models_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_logged_models")),
    )
    op.create_index(
        op.f("ix_logged_models_experiment_id_created_time"),
        "logged_models",
        ["experiment_id", "created_time"],
    )
    op.create_index(op.f("ix_logged_models_source_run_id"), "logged_models", ["source_run_id"])
    op.create_table(
        "logged_model_files",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        _workspace(),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["logged_models.model_id"],
            name=op.f("fk_logged_model_files_model_id_logged_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "path", name=op.f("pk_logged_model_files")),
    )
    op.create_table(
        "mlflow_imports",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=250), nullable=False),
        _workspace(),
        sa.Column("target_id", sa.String(length=250), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "kind", "source_id", name=op.f("pk_mlflow_imports")),
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("trusted_by", sa.String(length=250), nullable=True))
        batch.add_column(sa.Column("trusted_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("source_uri", sa.Text(), nullable=True))
        batch.add_column(sa.Column("logged_model_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("logged_model_id")
        batch.drop_column("source_uri")
        batch.drop_column("trusted_time")
        batch.drop_column("trusted_by")
    op.drop_table("mlflow_imports")
    op.drop_table("logged_model_files")
    op.drop_index(op.f("ix_logged_models_source_run_id"), table_name="logged_models")
    op.drop_index(op.f("ix_logged_models_experiment_id_created_time"), table_name="logged_models")
    op.drop_table("logged_models")
    op.drop_table("experiment_tags")
