"""QuantileSketch: the relative-accuracy guarantee against numpy, exact merges (also when folding), rank bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput
from loopml.stats.sketch import BucketStore, QuantileSketch

ALPHA = 0.01
QS = np.linspace(0.0, 1.0, 201)


def distributions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 100_000
    with_zeros = rng.normal(size=n)
    with_zeros[rng.random(n) < 0.2] = 0.0
    return {
        "normal": rng.normal(loc=3.0, scale=10.0, size=n),
        "lognormal": rng.lognormal(mean=0.0, sigma=3.0, size=n),
        "negatives_and_zeros": with_zeros,
        "integers": rng.poisson(4.0, size=n).astype(np.float64),
        "negative_integers": rng.integers(-1000, 1000, size=n).astype(np.float64),
        "wide_uniform": rng.uniform(-1e9, 1e6, size=n),
        "exponential_tiny": rng.exponential(1e-12, size=n),
    }


@pytest.mark.parametrize("name", sorted(distributions()))
def test_quantiles_are_within_alpha_of_numpy_lower(name: str) -> None:
    values = distributions()[name]
    sketch = QuantileSketch.from_values(values)
    exact = np.quantile(values, QS, method="lower")
    estimate = sketch.quantiles(QS)
    assert np.all(np.abs(estimate - exact) <= ALPHA * np.abs(exact) * (1 + 1e-9))


@pytest.mark.parametrize("name", sorted(distributions()))
def test_rank_error_is_bounded_by_the_bucket_holding_the_point(name: str) -> None:
    values = np.sort(distributions()[name])
    sketch = QuantileSketch.from_values(values)
    gamma = sketch.gamma
    points = np.concatenate(
        [np.quantile(values, np.linspace(0, 1, 37)), [0.0, -np.inf, np.inf, 1e300, -1e300]]
    )
    below = sketch.rank(points)
    exact = np.searchsorted(values, points, side="left")
    # Values whose bucket could hold the point: within a factor gamma of it, same sign.
    low, high = np.minimum(points * gamma, points / gamma), np.maximum(points * gamma, points / gamma)
    near = np.searchsorted(values, high, side="right") - np.searchsorted(values, low, side="left")
    near = np.where(points == 0, 0, near)
    assert np.all(np.abs(below - exact) <= near + 1e-6)
    at_or_below = sketch.rank(np.array([0.0]), inclusive=True)
    assert at_or_below[0] == np.count_nonzero(values <= 0.0)


@pytest.mark.parametrize("split", [1, 777, 50_000, 99_999])
def test_merge_equals_the_sketch_of_the_concatenation(split: int) -> None:
    values = distributions()["negatives_and_zeros"]
    merged = QuantileSketch.from_values(values[:split]).merge(QuantileSketch.from_values(values[split:]))
    assert merged == QuantileSketch.from_values(values)


def test_folding_keeps_high_quantiles_accurate_and_merges_exactly() -> None:
    rng = np.random.default_rng(3)
    values = 10.0 ** rng.uniform(-150, 150, size=20_000)  # ~17,000 keys: far beyond 2048
    sketch = QuantileSketch.from_values(values)
    assert len(sketch.positive.counts) == 2048
    assert sketch.count == values.size
    qs = np.linspace(0.0, 1.0, 1001)
    exact = np.quantile(values, qs, method="lower")
    kept = exact > sketch.gamma**sketch.positive.offset  # above the folded bucket: the guarantee holds
    assert 40 <= kept.sum() < 100  # 2048 buckets keep the top ~18 of 300 decades
    error = np.abs(sketch.quantiles(qs) - exact)
    assert np.all(error[kept] <= ALPHA * exact[kept] * (1 + 1e-9))
    assert np.all(sketch.quantiles(qs)[~kept] <= sketch.gamma**sketch.positive.offset)
    halves = QuantileSketch.from_values(values[:7000]).merge(QuantileSketch.from_values(values[7000:]))
    assert halves == sketch


@given(
    chunks=st.lists(
        st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), max_size=30),
        min_size=1,
        max_size=4,
    ),
    max_buckets=st.integers(min_value=1, max_value=16),
)
def test_merge_is_exact_for_any_split_and_any_cap(chunks: list[list[float]], max_buckets: int) -> None:
    sketches = [
        QuantileSketch.from_values(np.array(c, dtype=np.float64), max_buckets=max_buckets) for c in chunks
    ]
    merged = sketches[0]
    for sketch in sketches[1:]:
        merged = merged.merge(sketch)
    whole = QuantileSketch.from_values(
        np.array([v for c in chunks for v in c], dtype=np.float64), max_buckets=max_buckets
    )
    assert merged == whole
    assert len(merged.positive.counts) <= max_buckets
    assert len(merged.negative.counts) <= max_buckets


def test_empty_sketch() -> None:
    sketch = QuantileSketch.from_values(np.zeros(0))
    assert sketch.count == 0
    assert np.isnan(sketch.quantiles(np.array([0.5]))).all()
    assert sketch.rank(np.array([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.0, 0.0]
    assert QuantileSketch.from_dict(sketch.to_dict()) == sketch


def test_dict_round_trip_and_damage() -> None:
    sketch = QuantileSketch.from_values(distributions()["normal"])
    assert QuantileSketch.from_dict(sketch.to_dict()) == sketch
    damaged = sketch.to_dict()
    damaged["positive"] = {"offset": 0, "counts": "not base64!"}
    with pytest.raises(InvalidInput, match="packed"):
        QuantileSketch.from_dict(damaged)


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="alpha"):
        QuantileSketch(alpha=1.5)
    with pytest.raises(InvalidInput, match="different settings"):
        QuantileSketch(alpha=0.01).merge(QuantileSketch(alpha=0.02))


def test_store_is_canonical() -> None:
    assert BucketStore.from_array(5, np.array([0, 0, 3, 0, 1, 0]), 10) == BucketStore(7, (3, 0, 1))
    assert BucketStore.from_array(0, np.array([1, 2, 3, 4]), 2) == BucketStore(2, (6, 4))
