"""Properties of the metric history: any chunking of the same points gives the same history and latest value."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.storage.metadata.database import Database
from loopml.tracking.metric_log import MetricPoint
from loopml.tracking.store import TrackingStore

points = st.lists(
    st.tuples(
        st.one_of(st.floats(allow_nan=False, width=64), st.just(math.nan)),
        st.integers(min_value=-3, max_value=3),
        st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingStore]:
    db = Database(f"sqlite:///{Path(tmp_path_factory.mktemp('metric-log')) / 'loopml.db'}")
    yield TrackingStore(db)
    db.dispose()


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=60, deadline=None)
@given(logged=points, cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=4))
def test_history_and_latest_do_not_depend_on_batching(
    store: TrackingStore, logged: list[MetricPoint], cuts: list[int]
) -> None:
    experiment = store.get_or_create_experiment("props")
    run = store.create_run(experiment.experiment_id)
    bounds = [0, *sorted(c for c in cuts if c < len(logged)), len(logged)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            store.metrics.append({(run.run_id, "m"): list(logged[start:end])})
    history = store.metrics.history(run.run_id, "m")
    expected = sorted(enumerate(logged), key=lambda item: (item[1][1], item[1][2], item[0]))
    assert [(p.step, p.timestamp) for p in history] == [(s, t) for _, (_, s, t) in expected]
    assert all(_same(p.value, v) for p, (_, (v, _, _)) in zip(history, expected, strict=True))
    top = max((s, t) for _, s, t in logged)
    last_of_top = [v for v, s, t in logged if (s, t) == top][-1]
    assert _same(store.get_run(run.run_id).metrics["m"], last_of_top)
