"""Tests for what a run captures at start: git state, Python environment, entry point, user."""

from __future__ import annotations

import getpass
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from loopml.core.hashing import hash_text
from loopml.tracking.environment import (
    GitState,
    PythonEnvironment,
    clear_caches,
    entry_point,
    git_state,
    python_environment,
    user_name,
)

NO_GIT = GitState(None, None, None, None, False, None, None)
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The user's git config and a surrounding repository (or a git hook's GIT_DIR) must not leak in.
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    clear_caches()
    yield
    clear_caches()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_repo(tmp_path: Path, *, commit: bool = True) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "commit.gpgsign", "false")
    if commit:
        (repo / "train.py").write_text("lr = 0.1\n")
        git(repo, "add", "train.py")
        git(repo, "commit", "-q", "-m", "initial")
    return repo


def test_clean_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    state = git_state(repo)
    assert state.commit == git(repo, "rev-parse", "HEAD")
    assert state.commit is not None
    assert HEX40.match(state.commit)
    assert state.branch == "main"
    assert state.dirty is False
    assert state.diff is None
    assert state.diff_hash is None
    assert state.diff_truncated is False
    assert state.root == str(repo.resolve())


def test_modified_tracked_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "train.py").write_text("lr = 0.2\n")
    state = git_state(repo)
    assert state.dirty is True
    assert state.diff is not None
    assert "-lr = 0.1" in state.diff
    assert "+lr = 0.2" in state.diff
    assert state.diff_hash == hash_text(state.diff)
    assert state.diff_truncated is False

    clear_caches()
    assert git_state(repo).diff_hash == state.diff_hash  # same change, same hash

    (repo / "train.py").write_text("lr = 0.3\n")
    clear_caches()
    other = git_state(repo)
    assert other.diff_hash is not None
    assert other.diff_hash != state.diff_hash


def test_untracked_files_are_listed_by_name_only(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "notes.txt").write_text("secret content\n")
    state = git_state(repo)
    assert state.dirty is True
    assert state.diff == "# untracked: notes.txt\n"
    assert state.diff_hash == hash_text(state.diff)


def test_rename_lists_no_phantom_untracked_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "mv", "train.py", "fit.py")
    state = git_state(repo)
    assert state.dirty is True
    assert state.diff is not None
    assert "fit.py" in state.diff
    assert "# untracked" not in state.diff


def test_diff_is_capped_but_hashed_whole(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    # Multi-byte characters, so the cap may fall inside one.
    (repo / "train.py").write_text("".join(f"ü line {i} €\n" for i in range(200)))
    (repo / "extra.bin").write_text("x")
    full = git_state(repo)
    capped = git_state(repo, max_diff_bytes=101)
    assert full.diff is not None
    assert capped.diff is not None
    assert full.diff_truncated is False
    assert capped.diff_truncated is True
    assert len(capped.diff.encode("utf-8")) <= 101
    assert full.diff.startswith(capped.diff)
    assert capped.diff_hash == full.diff_hash == hash_text(full.diff)


def test_not_a_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_state(plain) == NO_GIT
    assert git_state(tmp_path / "missing") == NO_GIT


def test_git_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert git_state(repo) == NO_GIT


def test_git_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)

    def slow(*args: object, **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(cmd="git", timeout=10)

    monkeypatch.setattr(subprocess, "run", slow)
    assert git_state(repo) == NO_GIT


def test_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "--detach")
    state = git_state(repo)
    assert state.branch is None
    assert state.commit == git(repo, "rev-parse", "HEAD")
    assert state.dirty is False


def test_repo_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, commit=False)
    empty = git_state(repo)
    assert empty == GitState(None, "main", False, None, False, None, str(repo.resolve()))

    (repo / "staged.py").write_text("staged = 1\n")
    git(repo, "add", "staged.py")
    (repo / "staged.py").write_text("staged = 1\nedited = 2\n")  # unstaged edit on top
    (repo / "loose.txt").write_text("x")
    clear_caches()
    state = git_state(repo)
    assert state.commit is None
    assert state.branch == "main"
    assert state.dirty is True
    assert state.diff is not None
    assert "+staged = 1" in state.diff
    assert "+edited = 2" in state.diff
    assert "# untracked: loose.txt" in state.diff


def test_subdirectory_and_cwd_share_the_repo_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    sub = repo / "src"
    sub.mkdir()
    state = git_state(repo)
    assert git_state(sub) is state
    monkeypatch.chdir(sub)
    assert git_state() is state


def test_cached_until_cleared(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    first = git_state(repo)
    (repo / "train.py").write_text("lr = 0.5\n")
    assert git_state(repo) is first  # cached: the change is not seen
    assert git_state(str(repo)) is first
    clear_caches()
    second = git_state(repo)
    assert second is not first
    assert second.dirty is True


def test_python_environment() -> None:
    env = python_environment()
    assert isinstance(env, PythonEnvironment)
    assert env.packages["pytest"] == importlib.metadata.version("pytest")
    assert env.packages["sqlalchemy"] == importlib.metadata.version("sqlalchemy")
    assert list(env.packages) == sorted(env.packages)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in env.packages)
    assert env.python_version == sys.version.split()[0]
    assert HEX64.match(env.hash)
    assert python_environment() is env
    clear_caches()
    again = python_environment()
    assert again is not env
    assert again.hash == env.hash


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train.py", "--lr", "0.1"], "python train.py --lr 0.1"),
        (["train.py", "--name", "my run"], "python train.py --name 'my run'"),
        ([""], "<interactive>"),
        ([], "<interactive>"),
        (["-c", "--flag"], "python -c ... --flag"),
    ],
)
def test_entry_point(argv: list[str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    assert entry_point() == expected


def test_entry_point_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside = tmp_path / "proj"
    (inside / "jobs").mkdir(parents=True)
    monkeypatch.chdir(inside)
    monkeypatch.setattr(sys, "argv", [str(inside / "jobs" / "train.py"), "-v"])
    assert entry_point() == "python jobs/train.py -v"
    outside = str(tmp_path / "elsewhere" / "train.py")
    monkeypatch.setattr(sys, "argv", [outside])
    assert entry_point() == f"python {outside}"


def test_entry_point_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = tmp_path / "mypkg" / "__main__.py"
    spec = ModuleSpec("mypkg.__main__", None, origin=str(origin))
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", spec)
    monkeypatch.setattr(sys, "argv", [str(origin), "--epochs", "3"])
    assert entry_point() == "python -m mypkg --epochs 3"


def test_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    assert user_name() == "alice"

    def fail() -> str:
        raise OSError("no user")

    monkeypatch.setattr(getpass, "getuser", fail)
    assert user_name() is None
