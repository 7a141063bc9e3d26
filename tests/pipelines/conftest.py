"""Fixtures of the pipeline tests: a project with a default tracker, and temporary first-party modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_modules import ModuleFiles


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleFiles]:
    """A folder of first-party modules on sys.path (outside the project store)."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    files = ModuleFiles(folder)
    yield files
    files.forget()
