"""Metric series for charts: every point when short, equal-count buckets (mean, min, max) when long; run counts
for the experiments overview; counting a filtered search."""

from __future__ import annotations

import math

import pytest

import loopml
from loopml.core.errors import InvalidInput, NotFound
from loopml.tracking.client import Client
from loopml.tracking.search import count_runs, search_runs
from loopml.tracking.tracker import Tracker


def _logged(tracker: Tracker, values: list[float], key: str = "loss") -> str:
    with loopml.start_run("charts", tracker=tracker) as run:
        client = Client(tracker)
        points = [loopml.tracking.records.Metric(key, v, step, 1000 + step) for step, v in enumerate(values)]
        client.log_batch(run.run_id, metrics=points)
    return run.run_id


def test_a_short_series_comes_back_whole(tracker: Tracker) -> None:
    run_id = _logged(tracker, [3.0, float("nan"), 1.0])
    overview = Client(tracker).get_metric_overview(run_id, "loss", max_points=10)
    assert overview.points == 3
    assert overview.steps == [0, 1, 2]
    assert overview.values == [3.0, None, 1.0]
    assert not overview.downsampled


def test_a_long_series_is_bucketed_by_the_database_keeping_spikes(tracker: Tracker) -> None:
    values = [1.0] * 10_000
    values[5_003] = 50.0  # one spike inside a bucket
    run_id = _logged(tracker, values)
    overview = Client(tracker).get_metric_overview(run_id, "loss", max_points=100)
    assert overview.points == 10_000
    assert overview.downsampled
    assert overview.low is not None
    assert overview.high is not None
    assert len(overview.steps) == 100
    assert overview.steps[:3] == [0, 100, 200]  # each bucket's first step, in order
    assert max(v for v in overview.high if v is not None) == 50.0  # the spike survives as the bucket's high
    spiked = overview.high.index(50.0)
    assert overview.steps[spiked] <= 5_003 < overview.steps[spiked] + 100
    mean = overview.values[spiked]
    assert mean is not None
    assert math.isclose(mean, (99 * 1.0 + 50.0) / 100)
    assert all(low == 1.0 for low in overview.low)


def test_overview_of_unknown_runs_and_keys(tracker: Tracker) -> None:
    run_id = _logged(tracker, [1.0])
    client = Client(tracker)
    assert client.get_metric_overview(run_id, "never-logged").points == 0
    with pytest.raises(NotFound):
        client.get_metric_overview("0" * 32, "loss")
    with pytest.raises(InvalidInput, match="max_points"):
        client.get_metric_overview(run_id, "loss", max_points=1)


def test_experiment_activity_and_filtered_counts(tracker: Tracker) -> None:
    for auc in (0.5, 0.7, 0.9):
        with loopml.start_run("activity", tracker=tracker):
            loopml.log_metric("auc", auc)
    with loopml.start_run("other", tracker=tracker):
        pass
    tracker.flush()
    store = tracker.store
    activity = store.experiment_activity()
    by_name = {store.get_experiment(e).name: counts for e, counts in activity.items()}
    assert by_name["activity"][0] == 3
    assert by_name["other"][0] == 1
    assert by_name["activity"][1] is not None
    assert count_runs(store, ["activity"], "metrics.auc > 0.6") == 2
    page = search_runs(store, ["activity"], "metrics.auc > 0.6", max_results=1)
    assert len(page.runs) == 1
    assert page.next_page_token is not None
    with pytest.raises(InvalidInput):
        count_runs(store, ["activity"], "metrics.auc >")
