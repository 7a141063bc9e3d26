"""What a run captures automatically at start: git state, Python environment, entry point and user.

Everything here is computed once per process (git state once per repository) and cached, because a
training script may start many runs and each start must stay cheap. `clear_caches()` forces a recompute.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from loopml.core.hashing import hash_text
from loopml.core.installed import cached_json, installed_key

_GIT_TIMEOUT_S = 10.0
# `git diff <empty tree>` is `git diff HEAD` for a repository without commits; the id depends on the hash.
_EMPTY_TREE = {
    "sha1": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "sha256": "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
_NAME_SEPARATORS = re.compile(r"[-_.]+")  # PEP 503 name normalization

_lock = threading.Lock()
_git_cache: dict[tuple[str, int], tuple[float, GitState]] = {}
# A run loop reuses the answer; a notebook that commits between runs sees the new commit after this long.
GIT_CACHE_SECONDS = 2.0
_python_cache: list[PythonEnvironment] = []


@dataclass(frozen=True)
class GitState:
    """The repository a run was started from; all fields are None outside a git work tree."""

    commit: str | None
    branch: str | None
    dirty: bool | None
    diff: str | None
    diff_truncated: bool
    diff_hash: str | None
    root: str | None


_NO_GIT = GitState(None, None, None, None, False, None, None)


@dataclass(frozen=True)
class PythonEnvironment:
    """Interpreter, platform and installed distributions, with one hash to compare environments."""

    python_version: str
    platform: str
    packages: dict[str, str]
    hash: str


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """Run git; None when it cannot run at all (missing, timed out, cwd gone)."""
    # No optional locks: capturing state must never contend with the user's own git commands.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stdout.decode("utf-8", errors="replace").splitlines()


def _fresh_cached(key: tuple[str, int]) -> GitState | None:
    with _lock:
        hit = _git_cache.get(key)
    return hit[1] if hit is not None and time.monotonic() - hit[0] < GIT_CACHE_SECONDS else None


def git_state(path: str | os.PathLike[str] | None = None, *, max_diff_bytes: int = 1_000_000) -> GitState:
    """Commit, branch and uncommitted change of the repository containing `path` (default: cwd), cached."""
    try:
        cwd = str(Path(path if path is not None else os.getcwd()).resolve())
    except OSError:
        return _NO_GIT
    fresh = _fresh_cached((cwd, max_diff_bytes))
    if fresh is not None:
        return fresh
    # One process answers root, hash format, branch and commit in the common case of a repo with commits.
    # --abbrev-ref is sticky (applies to every later argument), so the plain HEAD must come first.
    head = _git(cwd, "rev-parse", "--show-toplevel", "--show-object-format", "HEAD", "--abbrev-ref", "HEAD")
    if head is None or not head.stdout:
        return _NO_GIT
    if head.returncode == 0:
        root, object_format, commit, branch_or_head = _lines(head)[:4]
        branch: str | None = None if branch_or_head == "HEAD" else branch_or_head  # "HEAD" means detached
        base: str | None = commit
    else:  # No commits yet, so HEAD does not resolve; its branch is only a symbolic ref.
        top = _git(cwd, "rev-parse", "--show-toplevel", "--show-object-format")
        if top is None or top.returncode != 0:
            return _NO_GIT
        root, object_format = _lines(top)[:2]
        ref = _git(cwd, "symbolic-ref", "--short", "-q", "HEAD")
        branch = _lines(ref)[0] if ref is not None and ref.returncode == 0 and ref.stdout else None
        commit, base = None, _EMPTY_TREE.get(object_format)
    state = _fresh_cached((root, max_diff_bytes)) or _read_changes(root, commit, branch, base, max_diff_bytes)
    now = time.monotonic()
    with _lock:
        hit = _git_cache.get((root, max_diff_bytes))
        if hit is not None and now - hit[0] < GIT_CACHE_SECONDS:
            state = hit[1]  # another thread got there first: everyone shares one answer
        else:
            _git_cache[(root, max_diff_bytes)] = (now, state)
        _git_cache[(cwd, max_diff_bytes)] = _git_cache[(root, max_diff_bytes)]
        return state


def _read_changes(
    root: str, commit: str | None, branch: str | None, base: str | None, max_diff_bytes: int
) -> GitState:
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
    if status is None or status.returncode != 0:
        return GitState(commit, branch, None, None, False, None, root)
    untracked: list[str] = []
    tracked_changes = False
    entries = iter(status.stdout.decode("utf-8", errors="replace").split("\0"))
    for entry in entries:
        if entry.startswith("?? "):
            untracked.append(entry[3:])
        elif entry:
            tracked_changes = True
            if {"R", "C"} & set(entry[:2]):  # Renames and copies carry the original path as the next field.
                next(entries, None)
    if not tracked_changes and not untracked:
        return GitState(commit, branch, False, None, False, None, root)
    text = ""
    if tracked_changes and base is not None:
        # No external diff tools or textconv filters: user config must not run programs or change the text.
        diff = _git(root, "diff", "--no-color", "--no-ext-diff", "--no-textconv", base)
        if diff is not None and diff.returncode == 0:
            text = diff.stdout.decode("utf-8", errors="replace")
    # Untracked files are listed by name only: their content may be large data or secrets.
    text += "".join(f"# untracked: {name}\n" for name in untracked)
    data = text.encode("utf-8")
    truncated = len(data) > max_diff_bytes
    # "ignore" drops a multi-byte character cut at the boundary, so the cap holds in bytes.
    shown = data[:max_diff_bytes].decode("utf-8", errors="ignore") if truncated else text
    return GitState(commit, branch, True, shown, truncated, hash_text(text), root)


def python_environment(cache_dir: Path | None = None) -> PythonEnvironment:
    """Python version, platform and installed distributions of this process, computed once.

    With `cache_dir`, the package list is also kept on disk per installed set (see `core.installed`), so a
    cold process does not read every distribution's metadata again (~35 ms with 200 packages).
    """
    with _lock:
        if _python_cache:
            return _python_cache[0]
    path = cache_dir / f"python-{installed_key(schema='tracking-packages-1')}.json" if cache_dir else None
    packages: dict[str, str] = cached_json(path, _installed_packages, valid=_valid_packages)
    version, plat = platform.python_version(), platform.platform()
    env = PythonEnvironment(version, plat, packages, environment_hash(version, plat, packages))
    with _lock:
        if not _python_cache:
            _python_cache.append(env)
        return _python_cache[0]


def environment_hash(python_version: str, platform_name: str, packages: dict[str, str]) -> str:
    """The hash that names an environment (the same content gives the same name on every machine)."""
    canonical = json.dumps(
        {"python_version": python_version, "platform": platform_name, "packages": packages},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hash_text(canonical)


def _valid_packages(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _installed_packages() -> dict[str, str]:
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        # get_all, not [...]: a missing field is deprecated (later an error) on newer Pythons.
        names, versions = dist.metadata.get_all("Name"), dist.metadata.get_all("Version")
        if names and names[0]:
            # First on sys.path wins, as for importlib.metadata.version() and for imports.
            packages.setdefault(
                _NAME_SEPARATORS.sub("-", str(names[0])).lower(), str(versions[0]) if versions else ""
            )
    return dict(sorted(packages.items()))


def entry_point() -> str:
    """The command line of this process, e.g. "python train.py --lr 0.1", shell-quoted."""
    argv = list(sys.argv)
    if not argv or argv[0] == "":
        return "<interactive>"
    if argv[0] == "-c":  # The code itself is not in argv.
        return shlex.join(["python", "-c", "...", *argv[1:]])
    script = argv[0]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.origin and os.path.abspath(spec.origin) == os.path.abspath(script):
        # Run with "python -m": argv[0] is the module's file, the module name is what the user typed.
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *argv[1:]])
    try:
        cwd = os.getcwd()
        absolute = os.path.abspath(script)
        if os.path.commonpath([cwd, absolute]) == cwd:
            script = os.path.relpath(absolute, cwd)
    except (OSError, ValueError):  # cwd deleted, or a different drive on Windows
        pass
    return shlex.join(["python", script, *argv[1:]])


def user_name() -> str | None:
    """Login name of the user running this process, or None when it cannot be determined."""
    try:
        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return None


def clear_caches() -> None:
    """Forget cached git states and the Python environment, so the next call recomputes them."""
    with _lock:
        _git_cache.clear()
        _python_cache.clear()
