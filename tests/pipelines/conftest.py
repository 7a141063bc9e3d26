"""Fixtures of the pipeline tests: a project with a default tracker, temporary first-party modules, and the
executor every pipeline run uses.

Every test that runs pipelines on a `tracker` runs twice: with the executor its code names ("local") and with
every run moved to the session's Ray cluster by `LOOPML_EXECUTOR=ray` ("ray"), on SQLite, embedded and
through a team server. Caching, retries, tracking and lineage must not tell the two apart.
"""

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


@pytest.fixture(autouse=True, params=["local", "ray"])
def executor_variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """'local': pipelines run where their code says; 'ray': every run goes to the session's Ray cluster."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        monkeypatch.setenv("LOOPML_EXECUTOR", "ray")
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Ray variant only where pipelines run on a tracker, and on SQLite only (the executor does not
    touch the database: the driver writes it, as with the local executors)."""
    here = Path(__file__).parent
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        values = params.params if params is not None else {}
        ray_variant = values.get("executor_variant") == "ray"
        on_tracker = {"tracker", "sqlite_tracker"} & set(getattr(item, "fixturenames", ()))
        if (
            ray_variant
            and Path(str(item.path)).is_relative_to(here)
            and (
                not on_tracker
                or values.get("database_url") == "postgresql"
                or item.get_closest_marker("single_executor")
            )
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
