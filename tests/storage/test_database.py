"""Contract suite for the metadata `Database`: tests taking `database_url` run on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, func, inspect, select, text

from loopml.core.errors import ForeignDatabase, SchemaMismatch, StoreCorrupt
from loopml.storage.metadata import database as database_module
from loopml.storage.metadata.database import VERSION_TABLE, Database
from loopml.storage.metadata.schema import SCHEMA_HEAD, experiments

OpenDb = Callable[..., Database]


@pytest.fixture
def open_db() -> Iterator[OpenDb]:
    """`Database(url, **kwargs)`, disposed after the test (warnings are errors: no leaked connections)."""
    opened: list[Database] = []

    def _open(url: str, **kwargs: object) -> Database:
        db = Database(url, **kwargs)  # type: ignore[arg-type]
        opened.append(db)
        return db

    yield _open
    for db in opened:
        db.dispose()


def _execute(url: str, *statements: str) -> None:
    """Run raw SQL on `url` outside LoopML (to set up foreign or tampered databases)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _refused(url: str, error: type[Exception], **kwargs: object) -> pytest.ExceptionInfo[Exception]:
    """Open `url` expecting `error`, then dispose the half-opened Database's engine.

    `Database.__init__` raises from `_open()` after creating its engine, leaving a pooled connection that
    would be garbage-collected later (psycopg then emits a ResourceWarning, an error under our pytest config).
    """
    with pytest.raises(error) as excinfo:
        Database(url, **kwargs)  # type: ignore[arg-type]
    for entry in excinfo.traceback:
        candidate = entry.frame.f_locals.get("self")
        if isinstance(candidate, Database):
            candidate.dispose()
            break
    return excinfo  # type: ignore[return-value]


def _new_experiment(name: str) -> dict[str, object]:
    return {"experiment_id": uuid.uuid4().hex, "name": name, "created_time": 0}


def _count_experiments(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(experiments)).scalar_one())


# -- schema -------------------------------------------------------------------------------------------------


def test_schema_head_is_the_alembic_head() -> None:
    migrations = Path(database_module.__file__).parent / "migrations"
    assert ScriptDirectory(str(migrations)).get_current_head() == SCHEMA_HEAD


def test_fresh_database_is_migrated_to_head(database_url: str, open_db: OpenDb) -> None:
    db = open_db(database_url, auto_migrate=True)
    assert db.revision() == SCHEMA_HEAD
    assert {"loopml_meta", VERSION_TABLE, "experiments"} <= _table_names(database_url)


def test_reopening_is_a_no_op(database_url: str, open_db: OpenDb) -> None:
    open_db(database_url, auto_migrate=True).dispose()
    tables = _table_names(database_url)

    db = open_db(database_url)  # no auto_migrate: PostgreSQL must open without it once migrated
    assert db.revision() == SCHEMA_HEAD
    assert db.upgrade() == SCHEMA_HEAD
    assert _table_names(database_url) == tables


def test_foreign_database_is_refused_and_untouched(database_url: str) -> None:
    _execute(database_url, "CREATE TABLE customers(id int)")

    excinfo = _refused(database_url, ForeignDatabase, auto_migrate=True)

    assert "customers" in str(excinfo.value)
    assert _table_names(database_url) == {"customers"}


def test_newer_schema_revision_is_refused(database_url: str, open_db: OpenDb) -> None:
    open_db(database_url, auto_migrate=True).dispose()
    _execute(database_url, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")

    excinfo = _refused(database_url, SchemaMismatch)

    assert "9999" in str(excinfo.value)
    assert SCHEMA_HEAD in str(excinfo.value)


@pytest.mark.postgres
def test_empty_postgres_is_not_migrated_implicitly(postgres_url: str) -> None:
    excinfo = _refused(postgres_url, SchemaMismatch)

    assert "loopml db upgrade" in str(excinfo.value)
    assert _table_names(postgres_url) == set()


def test_garbage_sqlite_file_is_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "loopml.db"
    garbage = b"not a database" * 100
    path.write_bytes(garbage)

    _refused(f"sqlite:///{path}", StoreCorrupt)

    assert path.read_bytes() == garbage


# -- transactions -------------------------------------------------------------------------------------------


def test_transact_commits(database_url: str, open_db: OpenDb) -> None:
    db = open_db(database_url, auto_migrate=True)
    row = _new_experiment("committed")

    def insert(conn: Connection) -> str:
        conn.execute(experiments.insert().values(**row))
        return str(row["experiment_id"])

    assert db.transact(insert) == row["experiment_id"]  # transact returns what the change returns
    with db.read() as conn:
        names = conn.execute(select(experiments.c.name)).scalars().all()
    assert names == ["committed"]


def test_transact_rolls_back_on_error(database_url: str, open_db: OpenDb) -> None:
    db = open_db(database_url, auto_migrate=True)

    def insert_then_fail(conn: Connection) -> None:
        conn.execute(experiments.insert().values(**_new_experiment("rolled-back")))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        db.transact(insert_then_fail)

    assert _count_experiments(db) == 0


# -- concurrency (SQLite) -----------------------------------------------------------------------------------

WRITERS = 4
ROWS_PER_WRITER = 200


def _insert_experiments(url: str, writer: int, barrier: object) -> None:
    """Worker process: wait for the others, then insert ROWS_PER_WRITER experiments, one transaction each."""
    db = Database(url)
    try:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        for i in range(ROWS_PER_WRITER):
            row = _new_experiment(f"writer-{writer}-{i}")
            db.transact(lambda conn, row=row: conn.execute(experiments.insert().values(**row)))
    finally:
        db.dispose()


def test_concurrent_sqlite_writers_lose_nothing(tmp_path: Path, open_db: OpenDb) -> None:
    url = f"sqlite:///{tmp_path}/loopml.db"
    open_db(url).dispose()  # migrate once up front; the workers only write
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    workers = [ctx.Process(target=_insert_experiments, args=(url, n, barrier)) for n in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    try:
        assert [worker.exitcode for worker in workers] == [0] * WRITERS
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
            worker.close()

    assert _count_experiments(open_db(url)) == WRITERS * ROWS_PER_WRITER
