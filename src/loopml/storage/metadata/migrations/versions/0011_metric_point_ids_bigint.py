"""Metric point ids are 64-bit on PostgreSQL (a 32-bit serial runs out after about 2.1 billion points; a team
server logging 90,000 points a second reaches that in under seven hours). SQLite's rowid is 64-bit already.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE metrics ALTER COLUMN point_id TYPE BIGINT")
        op.execute("ALTER SEQUENCE IF EXISTS metrics_point_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE IF EXISTS metrics_point_id_seq AS INTEGER")
        op.execute("ALTER TABLE metrics ALTER COLUMN point_id TYPE INTEGER")
