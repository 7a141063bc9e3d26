"""End-to-end: the real `loopml` executable on a real project folder."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import loopml
from git_repo import git as _git
from loopml.core.settings import load_settings
from loopml.storage.metadata.schema import SCHEMA_HEAD
from loopml.tracking.tracker import Tracker

LOOPML = str(Path(sys.executable).parent / "loopml")


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    return subprocess.run(
        [LOOPML, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, list[str]]:
    """A project with three finished runs (auc 0.7, 0.9, 0.8), logged through the Python API."""
    assert cli(tmp_path, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=tmp_path))
    ids = []
    try:
        for auc, model in ((0.7, "lr"), (0.9, "rf"), (0.8, "rf")):
            with loopml.start_run(experiment="cli", name=f"{model}-{auc}", tracker=tracker) as run:
                run.log_params({"model": model})
                run.log_metrics({"auc": auc, "loss": 1 - auc})
            ids.append(run.run_id)
    finally:
        tracker.close()
    return tmp_path, ids


def test_init_creates_project_files_and_is_found_from_subfolders(tmp_path: Path) -> None:
    result = cli(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "loopml.toml").is_file()
    assert (tmp_path / ".loopml" / "loopml.db").is_file()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    listed = cli(sub, "experiments", "list", "--json")
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == []
    assert not (sub / ".loopml").exists()


def test_first_use_without_project_creates_store_and_says_so(tmp_path: Path) -> None:
    result = cli(tmp_path, "runs", "list", "--json")
    assert result.returncode == 0
    assert "created a new store" in result.stderr
    assert (tmp_path / ".loopml").is_dir()


def test_runs_list_filter_order_and_json(project: tuple[Path, list[str]]) -> None:
    folder, ids = project
    result = cli(
        folder, "runs", "list", "--filter", 'params.model = "rf"', "--order-by", "metrics.auc DESC", "--json"
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [r["run_id"] for r in runs] == [ids[1], ids[2]]
    table = cli(folder, "runs", "list")
    assert table.returncode == 0
    assert "rf-0.9" in table.stdout


def test_runs_show_and_compare(project: tuple[Path, list[str]]) -> None:
    folder, ids = project
    shown = cli(folder, "runs", "show", ids[1], "--json")
    assert json.loads(shown.stdout)["run"]["metrics"]["auc"] == 0.9
    compared = cli(folder, "runs", "compare", *ids, "--json")
    data = json.loads(compared.stdout)
    assert data["best"] == {"auc": 1, "loss": 1}
    assert data["params"]["model"] == ["lr", "rf", "rf"]
    text = cli(folder, "runs", "compare", *ids)
    assert text.returncode == 0
    assert "metrics.auc" in text.stdout


def test_delete_restore_gc(project: tuple[Path, list[str]]) -> None:
    folder, ids = project
    assert cli(folder, "runs", "delete", ids[0]).returncode == 0
    listed = json.loads(cli(folder, "runs", "list", "--json").stdout)["runs"]
    assert ids[0] not in [r["run_id"] for r in listed]
    assert cli(folder, "runs", "restore", ids[0]).returncode == 0
    assert len(json.loads(cli(folder, "runs", "list", "--json").stdout)["runs"]) == 3
    cli(folder, "runs", "delete", ids[0])
    preview = cli(folder, "gc")
    assert "Would purge 1 deleted run(s)" in preview.stdout
    gc = cli(folder, "gc", "--yes", "--json")
    assert json.loads(gc.stdout)["purged_runs"] == [ids[0]]
    assert cli(folder, "runs", "show", ids[0]).returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "list", "--filter", "metrics.auc >> 1"), "expected"),
        (("runs", "show", "0" * 32), "no run with id"),
        (("runs", "compare", "x"), "at least two"),
        (("runs", "list", "--max-results", "0"), "max-results"),
        (("runs", "delete", "nope"), "no run with id"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    project: tuple[Path, list[str]], args: tuple[str, ...], message: str
) -> None:
    folder, _ = project
    result = cli(folder, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_corrupt_database_exits_3_and_is_left_unchanged(tmp_path: Path) -> None:
    home = tmp_path / ".loopml"
    home.mkdir()
    garbage = b"this is not a database " * 100
    (home / "loopml.db").write_bytes(garbage)
    result = cli(tmp_path, "runs", "list")
    assert result.returncode == 3
    assert "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    assert (home / "loopml.db").read_bytes() == garbage


def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    result = cli(tmp_path, "runs", "list", env={"LOOPML_DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 3
    assert "not a LoopML database" in result.stderr
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["customers"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    with sqlite3.connect(tmp_path / ".loopml" / "loopml.db") as conn:
        conn.execute("UPDATE loopml_alembic_version SET version_num = '9999'")
    conn.close()
    result = cli(tmp_path, "runs", "list")
    assert result.returncode == 3
    assert "9999" in result.stderr
    assert "newer" in result.stderr


def test_malformed_project_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text("experiment = [unclosed\n")
    result = cli(tmp_path, "runs", "list")
    assert result.returncode == 2
    assert "loopml.toml is not valid TOML" in result.stderr


def test_db_current_and_upgrade(tmp_path: Path) -> None:
    assert cli(tmp_path, "db", "upgrade").returncode == 0
    current = cli(tmp_path, "db", "current")
    assert current.returncode == 0
    assert f"database: {SCHEMA_HEAD}" in current.stdout


def test_unreachable_database_is_one_line_without_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://someone:s3cret-pw@127.0.0.1:{port}/db"
    result = cli(tmp_path, "runs", "list", env={"LOOPML_DATABASE_URL": url})
    assert result.returncode == 3
    assert "cannot use the database" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_run_from_dirty_tree_can_be_reproduced_with_diff_and_env(tmp_path: Path) -> None:
    _git(tmp_path, "-c", "init.defaultBranch=main", "init", "-q")
    (tmp_path / ".gitignore").write_text(".loopml/\n")
    (tmp_path / "train.py").write_text("LR = 0.1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    (tmp_path / "train.py").write_text("LR = 0.5  # experiment\n")
    script = "import loopml\nwith loopml.start_run() as run:\n    print(run.run_id)\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    started = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, check=True
    )
    run_id = started.stdout.strip()
    shown = json.loads(cli(tmp_path, "runs", "show", run_id, "--json").stdout)["run"]
    assert shown["git"]["dirty"] is True
    assert shown["git"]["commit"] == _git(tmp_path, "rev-parse", "HEAD").strip()
    diff = cli(tmp_path, "runs", "diff", run_id)
    assert diff.returncode == 0
    _git(tmp_path, "checkout", "-q", "--", "train.py")  # back to the commit, then re-apply the stored change
    patch = tmp_path / "run.patch"
    patch.write_text(diff.stdout)
    _git(tmp_path, "apply", str(patch))
    assert (tmp_path / "train.py").read_text() == "LR = 0.5  # experiment\n"
    packages = cli(tmp_path, "runs", "env", run_id)
    assert packages.returncode == 0
    assert any(line.startswith("sqlalchemy==") for line in packages.stdout.splitlines())


def test_markup_in_names_is_shown_literally(tmp_path: Path) -> None:
    tracker = Tracker(load_settings(project_dir=tmp_path))
    try:
        with loopml.start_run(name="lr[/0.1]", tracker=tracker) as run:
            run.set_tag("team", "[red]x[/]")
    finally:
        tracker.close()
    listed = cli(tmp_path, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "lr[/0.1]" in listed.stdout
    shown = cli(tmp_path, "runs", "show", run.run_id)
    assert shown.returncode == 0, shown.stderr
    assert "[red]x[/]" in shown.stdout


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"LOOPML_DATABASE_URL": "postgresql+psycopg://u@host:notaport/db"}, 2, "not a database URL"),
        ({"LOOPML_HOME": "/dev/null/store"}, 3, "cannot create the store folder"),
        ({"LOOPML_BUSY_TIMEOUT_S": "inf"}, 2, "busy_timeout_s"),
        ({"LOOPML_DATABASE_URL": "sqlite://"}, 2, "in-memory"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, env: dict[str, str], code: int, message: str) -> None:
    result = cli(tmp_path, "runs", "list", env=env)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_huge_page_token_is_refused(project: tuple[Path, list[str]]) -> None:
    folder, _ = project
    token = base64.urlsafe_b64encode(b'{"offset": 10000000000000000000000}').decode()
    result = cli(folder, "runs", "list", "--page-token", token)
    assert result.returncode == 2
    assert "page token" in result.stderr


def test_relative_paths_in_project_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text(
        'database_url = "sqlite:///meta/loopml.db"\nartifact_url = "blobs"\n'
    )
    sub = tmp_path / "sub"
    sub.mkdir()
    assert cli(sub, "experiments", "create", "one").returncode == 0
    assert (tmp_path / "meta" / "loopml.db").is_file()
    listed = json.loads(cli(tmp_path, "experiments", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["one"]


def test_store_folder_is_ignored_by_git(tmp_path: Path) -> None:
    _git(tmp_path, "-c", "init.defaultBranch=main", "init", "-q")
    assert cli(tmp_path, "init").returncode == 0
    _git(tmp_path, "add", "loopml.toml")
    _git(tmp_path, "commit", "-qm", "project")
    assert _git(tmp_path, "status", "--porcelain") == ""


def test_data_commands_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "tx.csv"
    data.write_text("amount,country\n10.5,DE\n20.0,FR\n30.25,DE\n")
    added = cli(tmp_path, "data", "add", "tx", "tx.csv", "-m", "first")
    assert added.returncode == 0, added.stderr
    assert "Added tx@v1" in added.stdout
    assert "already tx@v1" in cli(tmp_path, "data", "add", "tx", "tx.csv").stdout
    data.write_text("amount,country,fraud\n10.5,DE,0\n20.0,FR,1\n")
    assert "Added tx@v2" in cli(tmp_path, "data", "add", "tx", "tx.csv").stdout
    shown = json.loads(cli(tmp_path, "data", "show", "tx@v2", "--json").stdout)
    assert shown["version"]["row_count"] == 2
    assert [c["name"] for c in shown["version"]["schema"]] == ["amount", "country", "fraud"]
    assert shown["profile"]["rows"] == 2
    changed = json.loads(cli(tmp_path, "data", "diff", "tx@v1", "tx@v2", "--json").stdout)
    assert changed["columns_added"] == ["fraud"]
    assert changed["rows"] == [3, 2]
    assert [v["version"] for v in json.loads(cli(tmp_path, "data", "log", "tx", "--json").stdout)] == [2, 1]
    assert cli(tmp_path, "data", "get", "tx@v1", "-o", "restored").returncode == 0
    assert (tmp_path / "restored" / "tx.csv").read_text().startswith("amount,country\n10.5")
    for args, message in (
        (("data", "show", "tx@v9"), "no version v9"),
        (("data", "show", "nope"), "no dataset named"),
        (("data", "add", "tx", "missing.csv"), "no such file"),
        (("data", "show", "tx@vx"), "not a dataset reference"),
    ):
        result = cli(tmp_path, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_fresh_clone_gets_its_data_from_pointers_and_a_remote(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "-c", "init.defaultBranch=main", "init", "-q")
    (origin / "data").mkdir()
    for i in range(40):
        (origin / "data" / f"{i}.txt").write_text(f"row {i}\n")
    assert cli(origin, "init").returncode == 0
    assert cli(origin, "data", "add", "corpus", "data").returncode == 0
    remote = tmp_path / "remote"
    pushed = cli(origin, "data", "push", "--remote", str(remote))
    assert pushed.returncode == 0, pushed.stderr
    _git(origin, "add", ".")
    _git(origin, "commit", "-qm", "data pointer")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert not (clone / "data").exists()  # the data itself is not in git
    restored = cli(clone, "data", "checkout", "--remote", str(remote))
    assert restored.returncode == 0, restored.stderr
    assert "corpus@v1: restored 40 file(s)" in restored.stdout
    assert (clone / "data" / "7.txt").read_text() == "row 7\n"
