"""Opening the metadata database: engine set-up, schema checks, migrations, and write transactions.

SQLite (the default) runs in WAL mode with a busy timeout, so several processes can read while one writes;
write transactions start with `BEGIN IMMEDIATE` so a writer waits for the lock instead of failing half-way.
An empty SQLite database is migrated on open under an exclusive file lock. PostgreSQL is migrated only by
`loopml db upgrade`. A database holding tables that are not LoopML's is refused and never altered.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.pool import StaticPool

from loopml.core.errors import (
    ForeignDatabase,
    InvalidInput,
    SchemaMismatch,
    StoreBusy,
    StoreCorrupt,
    StoreError,
)
from loopml.storage.metadata.schema import APPLICATION_ID, SCHEMA_HEAD, loopml_meta

T = TypeVar("T")
VERSION_TABLE = "loopml_alembic_version"


class Database:
    """A LoopML metadata database at one SQLAlchemy URL, checked (and on SQLite migrated) when opened."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, auto_migrate: bool | None = None) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.engine = _create_engine(url, busy_timeout_s)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        migrate = self.is_sqlite if auto_migrate is None else auto_migrate
        try:
            self._open(migrate)
        except BaseException:
            self.engine.dispose()  # a refused database must not leave pooled connections behind
            raise

    # -- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction (a consistent snapshot)."""
        with _translate_errors(self.url), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed at the end of the block or rolled back on error."""
        with (
            _translate_errors(self.url),
            self.engine.connect() as conn,
            conn.execution_options(loopml_write=True).begin(),
        ):
            yield conn

    def transact(self, change: Callable[[Connection], T], *, retry_forever: bool = False) -> T:
        """Run `change` in one write transaction, retrying while the database is locked by another process.

        Gives up with `StoreBusy` after the busy timeout unless `retry_forever` (used by the metric flusher,
        which must never drop acknowledged points).
        """
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                with self.engine.connect() as conn, conn.execution_options(loopml_write=True).begin():
                    return change(conn)
            except OperationalError as error:
                if not _is_busy(error):
                    raise _translate(error, self._display_url) from None
                if not retry_forever and time.monotonic() > deadline:
                    raise StoreBusy(
                        f"the database {self._display_url} stayed locked for {self.busy_timeout_s:.0f} s; "
                        "another process holds a long write transaction"
                    ) from None
            time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not security
            delay = min(delay * 2, 0.5)

    def dispose(self, *, close: bool = True) -> None:
        """Drop pooled connections (`close=False` after a fork: the parent still owns them)."""
        self.engine.dispose(close=close)

    # -- schema -------------------------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The schema revision recorded in the database, or None for an empty database."""
        with _translate_errors(self.url), self.engine.connect() as conn:
            return _inspect_revision(conn, self._display_url)

    def upgrade(self) -> str:
        """Bring the schema to this LoopML's head revision (creating it in an empty database)."""
        with (
            self._migration_lock(),
            _translate_errors(self.url),
            self.engine.connect() as conn,
            conn.execution_options(loopml_write=True).begin(),
        ):
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
            current = _inspect_revision(conn, self._display_url)
            if current == SCHEMA_HEAD:
                return current
            _check_known(current, self._display_url)
            _run_alembic(conn)
            if current is None:
                conn.execute(loopml_meta.insert(), [{"key": "application", "value": APPLICATION_ID}])
        return SCHEMA_HEAD

    def _open(self, migrate: bool) -> None:
        current = self.revision()
        if current == SCHEMA_HEAD:
            return
        _check_known(current, self._display_url)
        if not migrate:
            found = "an empty database" if current is None else f"schema revision {current}"
            raise SchemaMismatch(
                f"{self._display_url} has {found}; this LoopML needs revision {SCHEMA_HEAD}: "
                "run `loopml db upgrade`"
            )
        self.upgrade()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Exclusive lock across processes for SQLite files (PostgreSQL uses an advisory lock)."""
        path = self.engine.url.database
        if not self.is_sqlite or not path or path == ":memory:":
            yield
            return
        with open(f"{path}.lock", "a+b") as handle:
            _lock_file(handle.fileno())
            try:
                yield
            finally:
                _unlock_file(handle.fileno())

    @property
    def _display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _create_engine(url: str, busy_timeout_s: float) -> Engine:
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a malformed port only fails when read
    except (ArgumentError, ValueError):
        raise InvalidInput(
            "LOOPML_DATABASE_URL is not a database URL (expected e.g. sqlite:///path or postgresql+psycopg://...)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, parsed.database, busy_timeout_s)
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError:
        raise InvalidInput("PostgreSQL support needs psycopg: pip install 'loopml[postgres]'") from None


def _create_sqlite_engine(url: str, database: str | None, busy_timeout_s: float) -> Engine:
    in_memory = not database or database == ":memory:"
    if in_memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        except OSError as error:
            raise StoreError(
                f"cannot create the folder of the database {database}: {error.strerror}"
            ) from None
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, so BEGIN IMMEDIATE is possible
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: survives a killed process, not power loss
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("loopml_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _inspect_revision(conn: Connection, display_url: str) -> str | None:
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if "loopml_meta" not in tables or VERSION_TABLE not in tables:
        sample = ", ".join(sorted(tables)[:5])
        raise ForeignDatabase(
            f"{display_url} is not a LoopML database (it has other tables: {sample}); "
            "it was left untouched: point LOOPML_DATABASE_URL at an empty or LoopML database"
        )
    app = conn.execute(select(loopml_meta.c.value).where(loopml_meta.c.key == "application")).scalar()
    if app != APPLICATION_ID:
        raise ForeignDatabase(
            f"{display_url} is not a LoopML database (no LoopML marker); it was left untouched"
        )
    revision = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    return str(revision) if revision is not None else None


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in ScriptDirectory(_script_location()).walk_revisions()]


def _check_known(revision: str | None, display_url: str) -> None:
    if revision is not None and revision not in _known_revisions():
        raise SchemaMismatch(
            f"{display_url} has schema revision {revision}, made by a newer LoopML than this one "
            f"(which knows up to {SCHEMA_HEAD}): upgrade LoopML to use it"
        )


def _script_location() -> str:
    return str(Path(__file__).parent / "migrations")


def _run_alembic(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _script_location())
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _is_busy(error: OperationalError) -> bool:
    """Errors that go away when the transaction is tried again: SQLite's lock, PostgreSQL's conflicts."""
    text = str(error.orig).lower()
    return any(word in text for word in ("locked", "busy", "deadlock detected", "could not serialize"))


def _translate(error: Exception, url: str) -> Exception:
    text = str(getattr(error, "orig", error))
    if "not a database" in text or "malformed" in text or "no such table" in text:
        return StoreCorrupt(f"{url} is corrupt or not a LoopML database ({text})")
    if isinstance(error, OperationalError) and _is_busy(error):
        return StoreBusy(f"{url} is locked by another process ({text})")
    if isinstance(error, OperationalError):
        reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return StoreError(f"cannot use the database {url}: {reason}")
    return error


@contextmanager
def _translate_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, DatabaseError) as error:
        translated = _translate(error, make_url(url).render_as_string(hide_password=True))
        if translated is error:
            raise
        raise translated from None


def sqlite_path(url: str) -> str | None:
    """The file path of a SQLite URL, or None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None  # not a URL at all: opening the database says so
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return os.path.abspath(parsed.database)
