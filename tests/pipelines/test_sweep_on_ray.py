"""Sweeps on Ray, and early stopping (ASHA) on Ray and on threads."""

from __future__ import annotations

import os
from typing import Any

import pytest

import loopml
from loopml.core.errors import InvalidInput
from loopml.pipelines.early_stopping import ASHA, RungTable
from loopml.pipelines.sweep import sweep
from loopml.tracking.client import Client
from loopml.tracking.records import RunStatus
from loopml.tracking.tracker import Tracker

pytestmark = pytest.mark.single_executor

EPOCHS = 9


@loopml.step
def fit(x: float) -> dict[str, Any]:
    loopml.log_param("worker_pid", os.getpid())
    return {"score": -((x - 2.0) ** 2)}


@loopml.pipeline
def objective(x: float = 0.0) -> Any:
    return fit(x)


@loopml.step(cache=False)
def train(quality: float) -> dict[str, Any]:
    """Learning curves that never cross: the trial with the highest quality is best at every epoch."""
    for epoch in range(EPOCHS):
        loopml.log_metric("val_score", quality * (epoch + 1), step=epoch + 1)
    return {"score": quality * EPOCHS}


@loopml.pipeline
def training(quality: float = 0.5) -> Any:
    return train(quality)


def test_a_sweep_runs_its_trials_on_ray_and_records_them_here(tracker: Tracker, ray_cluster: Any) -> None:
    result = sweep(objective, {"x": [0.0, 1.0, 2.0, 3.0, 4.0]}, metric="score", executor="ray")
    assert result.best.params == {"x": 2.0}
    assert result.best.value == 0.0
    client = Client(tracker)
    pids = set()
    for trial in result.trials:
        run = client.get_run(trial.run_id or "")
        assert run.parent_run_id == result.run_id
        step = client.search_runs(filter=f"tags.`loopml.pipeline_run` = '{trial.run_id}'").runs[0]
        pids.add(int(step.params["worker_pid"]))
    assert os.getpid() not in pids  # every step ran in a Ray worker


@pytest.mark.parametrize("executor", ["ray", "threads:2"])
def test_asha_stops_trials_that_fall_behind_and_keeps_the_best(
    tracker: Tracker, executor: str, request: pytest.FixtureRequest
) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    qualities = [0.9, 0.1, 0.5, 0.2, 0.8, 0.05, 0.3]  # the first trial runs alone: the best sets the bar
    result = sweep(
        training,
        {"quality": qualities},
        metric="score",
        executor=executor,
        early_stopping=ASHA("val_score", mode="max", grace_period=1, reduction_factor=3, max_t=EPOCHS),
    )
    assert result.best.params == {"quality": 0.9}
    assert not result.best.stopped
    stopped = [t for t in result.trials if t.stopped]
    assert {t.params["quality"] for t in stopped} >= {0.1, 0.05}  # below the best at the first rung
    client = Client(tracker)
    for trial in stopped:
        assert "stopped early by ASHA at val_score=" in (trial.error or "")
        run = client.get_run(trial.run_id or "")
        assert run.status is RunStatus.KILLED
        step = client.search_runs(filter=f"tags.`loopml.pipeline_run` = '{trial.run_id}'").runs[0]
        history = client.get_metric_history(step.run_id, "val_score")
        assert len(history) < EPOCHS  # it stopped training, not just reporting
    sweep_run = client.get_run(result.run_id)
    assert sweep_run.tags["loopml.sweep.stopped"] == str(len(stopped))


def test_early_stopping_is_checked_before_any_trial_runs(tracker: Tracker) -> None:
    for bad, reason in [
        (lambda: ASHA(""), "name of the metric"),
        (lambda: ASHA("m", mode="best"), "'max' or 'min'"),  # type: ignore[arg-type]
        (lambda: ASHA("m", grace_period=0), "grace_period"),
        (lambda: ASHA("m", reduction_factor=1), "reduction_factor"),
        (lambda: ASHA("m", max_t=1), "max_t"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            bad()
    with pytest.raises(InvalidInput, match="not in processes"):
        sweep(training, {"quality": [0.1]}, metric="score", executor="processes:1", early_stopping=ASHA("v"))
    assert Client(tracker).search_runs().runs == []


def test_the_rung_table_keeps_the_top_third_at_each_rung() -> None:
    asha = ASHA("m", mode="min", grace_period=1, reduction_factor=3, max_t=10)
    assert asha.rungs() == [9, 3, 1]
    assert ASHA("m", reduction_factor=3, max_t=27).rungs() == [27, 9, 3, 1]  # as Ray Tune places them
    assert ASHA("m", reduction_factor=2.5, max_t=7).rungs() == [6.25, 2.5, 1]
    table = RungTable(asha)
    assert table.report(0, 1, 1.0)  # first at the rung: nothing to compare with
    assert table.report(1, 1, 0.5)  # better (lower) than the bar
    assert not table.report(2, 1, 5.0)  # worse than the top third of {1.0, 0.5}
    assert not table.report(2, 2, 0.1)  # once stopped, stays stopped
    assert table.report(1, 2, 0.4)  # between rungs: no decision
    assert table.report(1, 3, 0.3)  # first at rung 3
    assert not table.report(0, 3, float("nan"))  # a diverged trial is the worst


def test_a_trial_that_reaches_max_t_has_finished_and_is_never_stopped() -> None:
    table = RungTable(ASHA("m", mode="max", grace_period=1, reduction_factor=3, max_t=9))
    assert table.report(0, 9, 10.0)
    assert table.report(1, 9, 1.0)  # far below the other, but it has trained for max_t steps already
    assert table.report(2, 12, 0.5)  # past max_t too
    assert table.stopped == set()
