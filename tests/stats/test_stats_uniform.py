"""UniformSketch (datetimes): absolute error within half a bucket, exact merges across levels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput
from loopml.stats.numeric import NumericProfile
from loopml.stats.uniform import UniformSketch

QS = np.linspace(0.0, 1.0, 201)
YEAR_NS = 365 * 86_400 * 10**9


def timestamps(n: int = 100_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64)
    return start + (rng.beta(2.0, 5.0, n) * YEAR_NS).astype(np.int64)


def test_quantiles_are_within_half_a_bucket_of_numpy_lower() -> None:
    values = timestamps()
    sketch = UniformSketch.from_values(values)
    assert len(sketch.store.counts) <= 2048
    assert sketch.width == 2**44  # a year at 2048 buckets: ~4.9 hours
    exact = np.quantile(values, QS, method="lower").astype(np.float64)
    assert np.all(np.abs(sketch.quantiles(QS) - exact) <= sketch.width / 2)


def test_datetime_profile_quantiles_are_hours_not_months_off() -> None:
    values = timestamps().astype("datetime64[ns]")
    profile = NumericProfile.from_array(values)
    assert isinstance(profile.sketch, UniformSketch)
    median = np.datetime64(int(profile.quantile(0.5)), "ns")
    exact = np.quantile(values.astype(np.int64), 0.5, method="lower").astype("datetime64[ns]")
    assert abs(median - exact) <= np.timedelta64(3, "h")
    assert profile.zeros is None


def test_rank_error_is_at_most_one_bucket() -> None:
    values = np.sort(timestamps(20_000, seed=1))
    sketch = UniformSketch.from_values(values)
    points = np.concatenate([np.quantile(values, np.linspace(0, 1, 41)), [-np.inf, np.inf]])
    exact = np.searchsorted(values, points, side="left")
    lows = np.floor(points / sketch.width) * sketch.width
    held = np.searchsorted(values, lows + sketch.width, side="left") - np.searchsorted(
        values, lows, side="left"
    )
    held = np.where(np.isfinite(points), held, 0)
    assert np.all(np.abs(sketch.rank(points) - exact) <= held + 1e-6)


@given(
    chunks=st.lists(
        st.lists(st.integers(min_value=-(2**62), max_value=2**62), max_size=25), min_size=1, max_size=4
    ),
    max_buckets=st.integers(min_value=2, max_value=16),
)
def test_merge_is_exact_for_any_split(chunks: list[list[int]], max_buckets: int) -> None:
    sketches = [
        UniformSketch.from_values(np.array(c, dtype=np.int64), max_buckets=max_buckets) for c in chunks
    ]
    merged = sketches[0]
    for sketch in sketches[1:]:
        merged = merged.merge(sketch)
    whole = UniformSketch.from_values(
        np.array([v for c in chunks for v in c], dtype=np.int64), max_buckets=max_buckets
    )
    assert merged == whole
    assert len(merged.store.counts) <= max_buckets


def test_merge_of_datetime_chunks_equals_whole_profile() -> None:
    values = timestamps(50_000, seed=4).astype("datetime64[ns]")
    values[::97] = np.datetime64("NaT")
    whole = NumericProfile.from_array(values)
    merged = NumericProfile.from_array(values[:123]).merge(NumericProfile.from_array(values[123:]))
    assert merged.sketch == whole.sketch
    assert (merged.count, merged.nulls, merged.min, merged.max, merged.hll) == (
        whole.count,
        whole.nulls,
        whole.min,
        whole.max,
        whole.hll,
    )


def test_round_trip_empty_and_refusals() -> None:
    sketch = UniformSketch.from_values(timestamps(1000))
    assert UniformSketch.from_dict(json.loads(json.dumps(sketch.to_dict()))) == sketch
    empty = UniformSketch.from_values(np.zeros(0, dtype=np.int64))
    assert empty.count == 0
    assert np.isnan(empty.quantiles(QS)).all()
    assert empty.merge(sketch) == sketch
    with pytest.raises(InvalidInput, match="max_buckets"):
        sketch.merge(UniformSketch(max_buckets=16))
    numbers = NumericProfile.from_array(np.arange(3.0))
    dates = NumericProfile.from_array(np.arange(3).astype("datetime64[D]"))
    with pytest.raises(InvalidInput, match="datetime column with that of a numeric"):
        numbers.merge(dates)
