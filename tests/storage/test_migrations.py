"""Upgrading a store made by an earlier LoopML keeps everything it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from loopml.storage.metadata.database import VERSION_TABLE, Database
from loopml.storage.metadata.schema import SCHEMA_HEAD


def test_upgrade_from_the_first_revision_keeps_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option(
        "script_location",
        str(Path(__file__).resolve().parents[2] / "src" / "loopml" / "storage" / "metadata" / "migrations"),
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO loopml_meta (key, value) VALUES ('application', 'loopml')"))
        conn.execute(
            text("INSERT INTO experiments (experiment_id, name, created_time) VALUES (:i, 'old', 1)"),
            {"i": "e" * 32},
        )
    engine.dispose()
    db = Database(url)  # SQLite is migrated on open
    try:
        assert db.revision() == SCHEMA_HEAD
        with db.read() as conn:
            assert conn.execute(text("SELECT name FROM experiments")).scalar() == "old"
            assert conn.execute(text("SELECT count(*) FROM dataset_versions")).scalar() == 0
    finally:
        db.dispose()


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from loopml.storage.metadata.schema import metadata

    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.dispose()
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert differences == []  # schema.py changed without a migration (or the reverse)


@pytest.mark.postgres
def test_metric_point_ids_are_64_bit_on_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url, auto_migrate=True)
    try:
        with db.engine.connect() as conn:
            kind = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns WHERE table_name = 'metrics' AND column_name = 'point_id'"
                )
            ).scalar()
            sequence = conn.execute(
                text("SELECT data_type FROM pg_sequences WHERE sequencename = 'metrics_point_id_seq'")
            ).scalar()
    finally:
        db.dispose()
    assert (kind, sequence) == ("bigint", "bigint")
