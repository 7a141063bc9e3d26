"""The installed-set key and the JSON cache a cold process reads instead of every package's metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.installed import cached_json, installed_key
from loopml.tracking import environment


def test_the_key_follows_lock_files_and_schema(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text("a==1\n")
    first = installed_key([lock], schema="s")
    assert installed_key([lock], schema="s") == first
    assert installed_key([lock], schema="t") != first
    lock.write_text("a==2\n")
    assert installed_key([lock], schema="s") != first


def test_cached_json_computes_once_then_reads_and_recomputes_a_bad_file(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"x": 1}

    path = tmp_path / "state" / "value.json"
    assert cached_json(path, compute, valid=lambda v: isinstance(v, dict)) == {"x": 1}
    assert cached_json(path, compute, valid=lambda v: isinstance(v, dict)) == {"x": 1}
    assert len(calls) == 1
    path.write_text("[not json")
    assert cached_json(path, compute, valid=lambda v: isinstance(v, dict)) == {"x": 1}
    assert len(calls) == 2
    assert cached_json(None, compute, valid=lambda v: True) == {"x": 1}  # no folder: just compute


def test_a_cold_process_reads_the_package_list_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environment, "_python_cache", [])
    first = environment.python_environment(tmp_path)
    assert first.packages["numpy"]
    monkeypatch.setattr(environment, "_python_cache", [])  # as in a new process

    def refuse() -> dict[str, str]:
        raise AssertionError("the package list was read again instead of from the cache file")

    monkeypatch.setattr(environment, "_installed_packages", refuse)
    again = environment.python_environment(tmp_path)
    assert again.hash == first.hash
