"""Shared fixtures: a throwaway PostgreSQL cluster for the session; `database_url` over SQLite and PostgreSQL.

Tests that take `database_url` form the store contract suite: they run once on a SQLite file and once on a
fresh PostgreSQL database. The cluster is started by `initdb` + `pg_ctl` from the newest
`/usr/lib/postgresql/*/bin` (Debian's `postgresql` package), listens on 127.0.0.1 only, and is deleted after
the session. Without the binaries the PostgreSQL tests are skipped, except under `CI=true`, where they must
run and fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings as hypothesis_settings

from loopml.core.settings import Settings, load_settings
from loopml.storage.metadata.database import Database
from loopml.tracking.tracker import Tracker, use_tracker
from ray_cluster import local_cluster
from s3_server import MISSING_RCLONE, S3Server, find_rclone, running, skip_or_fail

# No per-example deadline (a shared 2-core machine stalls now and then); in CI the examples are derandomized,
# so a red run is reproducible and a green one is not luck.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")

MISSING_BINARIES = "PostgreSQL binaries not found (apt-get install postgresql); skipping PostgreSQL tests"
HOST = "127.0.0.1"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster (trust authentication, superuser `postgres`, TCP on 127.0.0.1 only)."""

    host: str
    port: int
    bindir: Path
    datadir: Path
    start_seconds: float

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for psycopg."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=10"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _skip_or_fail(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def _find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl (else initdb on PATH)."""

    def version(bindir: str) -> tuple[int, ...]:
        name = Path(bindir).parent.name
        return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for bindir in candidates:
        if all(os.access(Path(bindir) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(bindir)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root but neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


def _run(argv: list[str], owner: pwd.struct_passwd | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    if owner is not None:
        if shutil.which("runuser"):
            argv = ["runuser", "-u", owner.pw_name, "--", *argv]
        else:
            argv = ["su", owner.pw_name, "-s", "/bin/sh", "-c", shlex.join(argv)]
    # pg_ctl sends the server's output to the -l log file, so capturing output here cannot hang on the server.
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode == 0:
        return
    server_log = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    pytest.fail(
        f"{what} failed (exit {result.returncode}): {shlex.join(result.args)}\n"
        f"{result.stdout}{result.stderr}{server_log}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster for the test session and delete it afterwards."""
    bindir = _find_bindir()
    if bindir is None:
        _skip_or_fail(MISSING_BINARIES)
    try:
        import psycopg  # noqa: F401 - the driver the URLs name
    except ModuleNotFoundError:
        _skip_or_fail("psycopg is not installed (pip install 'loopml[postgres]'); skipping PostgreSQL tests")

    owner = _owner()
    # A short path directly under the temp dir: the Unix socket path must stay under ~100 bytes, and the
    # postgres user must be able to reach it (pytest's own basetemp is private to root).
    root = Path(tempfile.mkdtemp(prefix="loopml-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "log"
    started = time.monotonic()
    try:
        initdb = [
            str(bindir / "initdb"),
            "-D", str(data),
            "-A", "trust",
            "-U", SUPERUSER,
            "--no-sync",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        ]  # fmt: skip
        _check(_run(initdb, owner, root), "initdb")
        port = 0
        for attempt in range(3):  # the free port can be taken between choosing and binding it
            port = _free_port()
            options = (
                f"-p {port} -k {root} -c listen_addresses={HOST} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
            result = _run(start, owner, root)
            if result.returncode == 0:
                break
            if attempt == 2:
                _check(result, "pg_ctl start", log)
        server = PostgresServer(HOST, port, bindir, data, time.monotonic() - started)
        try:
            yield server
        finally:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], owner, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"t_{secrets.token_hex(8)}"
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty metadata database: a SQLite file, or a fresh database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/loopml.db"
    return str(request.getfixturevalue("postgres_url"))


def _as_default(settings: Settings) -> Iterator[Tracker]:
    opened = Tracker(settings)
    previous = use_tracker(opened)
    try:
        yield opened
    finally:
        use_tracker(previous)
        opened.close()


@pytest.fixture
def tracker(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Tracker]:
    """A tracker on a fresh project (SQLite or PostgreSQL metadata, local blobs), made the process default.

    In a `CLIENT_SUITE` module's "server" runs it is instead a client of a team server over that project:
    the same tests, through HTTP, with an admin's token."""
    Database(database_url, auto_migrate=True).dispose()  # PostgreSQL is only migrated on request
    settings = load_settings(project_dir=tmp_path, database_url=database_url)
    if getattr(request, "param", "embedded") != "server":
        yield from _as_default(settings)
        return
    from loopml.server.accounts import AccountStore
    from team_server import serving

    served = Tracker(settings)
    try:
        token = AccountStore(served.stores.db).create_admin("suite")
        with serving(served) as url:
            yield from _as_default(load_settings(project_dir=tmp_path, tracking_uri=url, token=token))
    finally:
        served.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules with `CLIENT_SUITE = True` run every `tracker` test embedded and through a team server."""
    if getattr(metafunc.module, "CLIENT_SUITE", False) and "tracker" in metafunc.fixturenames:
        local = metafunc.definition.get_closest_marker("embedded_only") is not None
        metafunc.parametrize("tracker", ["embedded"] if local else ["embedded", "server"], indirect=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The session's local Ray cluster (see tests/ray_cluster.py), started on first use."""
    yield from local_cluster()


@pytest.fixture
def sqlite_tracker(tmp_path: Path) -> Iterator[Tracker]:
    """A tracker on a fresh SQLite project in `tmp_path`, made the process default."""
    yield from _as_default(load_settings(project_dir=tmp_path))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`rclone serve s3` for the whole session, with a random key pair, stopped at the end."""
    rclone = find_rclone()
    if rclone is None:
        skip_or_fail(MISSING_RCLONE)
    with running(rclone, tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket on the session's server."""
    return s3_server.make_bucket()
