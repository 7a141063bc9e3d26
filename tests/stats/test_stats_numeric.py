"""NumericProfile: exact merges, moments, null/inf handling, empty columns, histograms, size."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from loopml.core.errors import InvalidInput
from loopml.stats.numeric import NumericProfile
from loopml.stats.sketch import QuantileSketch


def assert_same_but_moments(merged: NumericProfile, whole: NumericProfile, rel: float = 1e-9) -> None:
    assert replace(merged, mean=0.0, m2=0.0) == replace(whole, mean=0.0, m2=0.0)
    assert merged.mean == pytest.approx(whole.mean, rel=rel)
    assert merged.variance == pytest.approx(whole.variance, rel=rel)


def test_merge_of_chunks_equals_profile_of_whole() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(loc=1000.0, scale=3.0, size=300_000)
    values[rng.integers(0, values.size, 500)] = np.nan
    values[:3] = [np.inf, -np.inf, 0.0]
    chunks = np.split(values, [1, 40_000, 40_001, 250_000])
    merged = NumericProfile.from_array(chunks[0])
    for chunk in chunks[1:]:
        merged = merged.merge(NumericProfile.from_array(chunk))
    whole = NumericProfile.from_array(values)
    assert_same_but_moments(merged, whole)
    finite = values[np.isfinite(values)]
    assert whole.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert whole.variance == pytest.approx(finite.var(), rel=1e-9)
    assert (whole.count, whole.nulls, whole.pos_inf, whole.neg_inf) == (
        finite.size,
        np.isnan(values).sum(),
        1,
        1,
    )
    assert whole.zeros == np.count_nonzero(values == 0.0)


def test_nan_none_and_infinities() -> None:
    profile = NumericProfile.from_array(
        np.array([1.0, None, np.nan, np.inf, -np.inf, 3.0, np.inf], dtype=object)
    )
    assert (profile.count, profile.nulls, profile.pos_inf, profile.neg_inf) == (2, 2, 2, 1)
    assert profile.infinities == 3
    assert (profile.min, profile.max, profile.mean, profile.variance) == (1.0, 3.0, 2.0, 1.0)
    assert profile.quantiles([0.0, 1.0]).tolist() == [1.0, 3.0]  # clipped to min and max
    assert round(profile.distinct()) == 2


class NAType:
    """Stands in for pandas.NA (what nullable Int64 columns hold in object arrays): recognised by type name."""

    def __float__(self) -> float:
        raise TypeError("float() argument must not be NA")


def test_pandas_style_missing_values_in_object_columns() -> None:
    profile = NumericProfile.from_array(np.array([1, NAType(), 3, None], dtype=object))
    assert (profile.count, profile.nulls, profile.mean) == (2, 2, 2.0)


@pytest.mark.parametrize("values", [np.zeros(0), np.full(5, np.nan), np.array([np.inf, -np.inf])])
def test_columns_without_finite_values(values: np.ndarray) -> None:
    profile = NumericProfile.from_array(values)
    assert profile.count == 0
    assert profile.min is None
    assert profile.max is None
    assert math.isnan(profile.quantile(0.5))
    assert math.isnan(profile.variance)
    assert math.isnan(profile.std)
    assert profile.histogram([0.0, 1.0]).tolist() == [0.0]
    assert profile.distinct() == 0.0
    assert NumericProfile.from_dict(json.loads(json.dumps(profile.to_dict(), allow_nan=False))) == profile
    other = NumericProfile.from_array(np.array([2.0, 4.0]))
    assert_same_but_moments(
        profile.merge(other),
        replace(other, nulls=profile.nulls, pos_inf=profile.pos_inf, neg_inf=profile.neg_inf),
    )
    assert profile.merge(other).mean == 3.0


def test_integers_booleans_and_datetimes() -> None:
    ints = NumericProfile.from_array(np.array([3, 1, 2, 2], dtype=np.int32))
    assert (ints.count, ints.min, ints.max, ints.mean) == (4, 1.0, 3.0, 2.0)
    assert NumericProfile.from_array(np.array([True, False, True])).mean == pytest.approx(2 / 3)
    days = np.array(["2024-01-01", "NaT", "2024-01-03"], dtype="datetime64[D]")
    dates = NumericProfile.from_array(days)
    assert (dates.count, dates.nulls) == (2, 1)
    assert dates.min == float(np.datetime64("2024-01-01", "ns").astype(np.int64))
    assert dates.max - dates.min == 2 * 86_400e9
    assert round(dates.distinct()) == 2


def test_histogram_is_close_to_numpy() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [rng.normal(size=200_000), np.zeros(1000), rng.integers(0, 5, 1000).astype(float)]
    )
    profile = NumericProfile.from_array(values)
    edges = np.concatenate([[-np.inf], np.quantile(values, np.linspace(0.1, 0.9, 9)), [0.0, np.inf]])
    edges = np.unique(edges)
    exact = np.array(
        [np.count_nonzero((values >= lo) & (values < hi)) for lo, hi in itertools.pairwise(edges[:-1])]
        + [np.count_nonzero(values >= edges[-2])]
    )
    estimate = profile.histogram(edges)
    assert estimate.sum() == pytest.approx(values.size)
    assert isinstance(profile.sketch, QuantileSketch)
    gamma = profile.sketch.gamma
    near = [
        np.count_nonzero(
            (np.abs(values) >= abs(e) / gamma)
            & (np.abs(values) <= abs(e) * gamma)
            & (np.sign(values) == np.sign(e))
        )
        if np.isfinite(e) and e != 0
        else 0
        for e in edges
    ]
    bound = np.array(near[:-1]) + np.array(near[1:])
    assert np.all(np.abs(estimate - exact) <= bound + 1e-6)
    assert profile.histogram([-1e9, 1e9]).tolist() == [values.size]  # min and max clip the tails exactly


def test_histogram_matches_numpy_closed_last_bin() -> None:
    profile = NumericProfile.from_array(np.array([0.0, 0.0, 1.0, 5.0, 5.0]))
    assert profile.histogram([0.0, 5.0]).tolist() == [5.0]
    assert profile.histogram([-1.0, 0.0, 5.0]).tolist() == [0.0, 5.0]
    with pytest.raises(InvalidInput, match="increasing"):
        profile.histogram([1.0, 1.0])
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        profile.quantiles([1.5])


def test_serialised_profile_of_a_million_rows_is_small() -> None:
    rng = np.random.default_rng(2)
    for values in (rng.normal(size=1_000_000), rng.lognormal(sigma=4, size=1_000_000)):
        text = json.dumps(NumericProfile.from_array(values).to_dict(), allow_nan=False)
        assert len(text) < 32_000
    worst = rng.choice([-1.0, 1.0], 1_000_000) * 10.0 ** rng.uniform(-300, 300, 1_000_000)  # both stores full
    assert len(json.dumps(NumericProfile.from_array(worst).to_dict())) < 32_000


def test_overflowing_moments_stay_strict_json() -> None:
    profile = NumericProfile.from_array(np.array([1e300, -1e300, 1e300]))
    assert math.isinf(profile.m2)
    text = json.dumps(profile.to_dict(), allow_nan=False)
    back = NumericProfile.from_dict(json.loads(text))
    assert back.m2 == profile.m2
    assert back.min == -1e300


def test_refusals() -> None:
    with pytest.raises(InvalidInput, match="not numbers"):
        NumericProfile.from_array(np.array(["a", "b"], dtype=object))
    with pytest.raises(InvalidInput, match="1-D"):
        NumericProfile.from_array(np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match="dtype"):
        NumericProfile.from_array(np.array([1 + 2j]))
    data = NumericProfile.from_array(np.arange(10.0)).to_dict()
    data["count"] = 9
    with pytest.raises(InvalidInput, match="inconsistent"):
        NumericProfile.from_dict(data)
    data["count"] = True
    with pytest.raises(InvalidInput, match="integer"):
        NumericProfile.from_dict(data)
