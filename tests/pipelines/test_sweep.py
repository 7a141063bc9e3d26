"""Sweeps: trials in parallel as child runs, the best one reported; bad spaces refused up front."""

from __future__ import annotations

from typing import Any

import pytest

import loopml
from loopml.core.errors import InvalidInput
from loopml.pipelines.sweep import IntRange, Uniform, sweep
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


@loopml.step
def score(x: float, y: int) -> dict[str, Any]:
    if x < 0:
        raise ValueError("negative x")
    return {"metrics": {"score": -((x - 2.0) ** 2) + y}}


@loopml.pipeline
def objective(x: float = 0.0, y: int = 0) -> Any:
    return score(x, y)


def test_grid_sweep_finds_the_best_point_in_parallel_and_tracks_trials(sqlite_tracker: Tracker) -> None:
    result = sweep(
        objective, {"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 1]}, metric="metrics.score", executor="threads:2"
    )
    assert len(result.trials) == 8
    assert result.best.params == {"x": 2.0, "y": 1}
    assert result.best.value == 1.0
    client = Client(sqlite_tracker)
    children = [t.run_id for t in result.trials]
    assert all(client.get_run(r or "").parent_run_id == result.run_id for r in children)
    parent = client.get_run(result.run_id)
    assert parent.tags["loopml.sweep.best_run"] == result.best.run_id
    assert parent.params["best.x"] == "2.0"


def test_min_mode_random_search_and_failed_trials(sqlite_tracker: Tracker) -> None:
    result = sweep(
        objective,
        {"x": Uniform(-1.0, 4.0), "y": IntRange(0, 3)},
        metric=lambda value: value["metrics"]["score"],
        mode="min",
        n_trials=6,
        seed=3,
        executor="inline",
    )
    assert len(result.trials) == 6
    failed = [t for t in result.trials if t.error is not None]
    assert all("negative x" in (t.error or "") for t in failed)
    assert all(t.params["x"] < 0 for t in failed)
    scored = [t.value for t in result.trials if t.value is not None]
    assert result.best.value == min(scored)
    again = sweep(
        objective, {"x": Uniform(-1.0, 4.0), "y": IntRange(0, 3)}, metric="metrics.score", n_trials=6, seed=3
    )
    assert [t.params for t in again.trials] == [
        t.params for t in result.trials
    ]  # the seed makes it repeatable


@pytest.mark.parametrize(
    ("space", "kwargs", "message"),
    [
        ({}, {}, "search space is empty"),
        ({"x": []}, {}, "has no values"),
        ({"x": Uniform(0, 1)}, {}, "needs n_trials"),
        ({"z": [1]}, {}, "has no param 'z'"),
        ({"x": ["a"]}, {}, "param 'x'"),
        ({"x": [1.0]}, {"mode": "best"}, "mode must be"),
        ({"x": [1.0]}, {"n_trials": 0}, "n_trials must be"),
    ],
)
def test_bad_sweeps_are_refused_before_any_trial(
    sqlite_tracker: Tracker, space: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        sweep(objective, space, metric="metrics.score", **kwargs)
    assert Client(sqlite_tracker).search_runs().runs == []


@loopml.step
def shared_base() -> int:
    return 7


@loopml.step
def offset(base: int, k: int) -> dict[str, Any]:
    return {"value": base + k}


@loopml.pipeline
def shared(k: int = 0) -> Any:
    return offset(shared_base(), k)


def test_trials_share_the_steps_they_have_in_common(sqlite_tracker: Tracker) -> None:
    from loopml.pipelines.store import PipelineStore

    result = sweep(shared, {"k": [1, 2, 3, 4]}, metric="value", executor="threads:4")
    assert result.best.value == 11
    store = PipelineStore(sqlite_tracker.stores.db)
    statuses = [store.get_run(t.run_id or "").step("shared_base").status.value for t in result.trials]
    assert statuses.count("finished") == 1
    assert statuses.count("cached") == 3
