"""Alembic environment: run migrations on the connection LoopML hands over (never on a URL of its own)."""

from __future__ import annotations

from alembic import context

from loopml.storage.metadata.schema import metadata

VERSION_TABLE = "loopml_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic revision --autogenerate` by developers
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://").connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
