"""CategoricalProfile and TextProfile: exact counts under the cap, stated bounds beyond it, nulls, merges."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput
from loopml.stats.categorical import CategoricalProfile, count_values
from loopml.stats.text import TextProfile


def test_counts_nulls_and_names() -> None:
    values = np.array(["b", "a", None, "b", np.nan, b"a", 1, "1", False], dtype=object)
    profile = CategoricalProfile.from_array(values)
    assert (profile.count, profile.nulls, profile.other) == (7, 2, 0)
    assert profile.counts == {"1": 2, "a": 2, "b": 2, "False": 1}
    assert list(profile.counts) == ["1", "a", "b", "False"]  # by count, then by value
    assert profile.distinct() == 4.0
    assert profile.frequencies()["a"] == pytest.approx(2 / 7)


def test_values_equal_in_python_are_one_category() -> None:
    # Counter groups 1, 1.0 and True (equal and equally hashed) under the first one seen: documented.
    assert count_values(np.array([1, True, 1.0], dtype=object)) == ({"1": 3}, 0)


@pytest.mark.parametrize(
    ("values", "expected", "nulls"),
    [
        (np.array([True, False, True]), {"True": 2, "False": 1}, 0),
        (np.array([1.5, np.nan, 1.5]), {"1.5": 2}, 1),
        (np.array([3, 3, 4], dtype=np.uint8), {"3": 2, "4": 1}, 0),
        (np.array(["x", "y", "x"]), {"x": 2, "y": 1}, 0),
        (np.array([b"x", b"y"]), {"x": 1, "y": 1}, 0),
        (np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"), {"2024-01-01": 1}, 1),
        (np.array([], dtype=object), {}, 0),
    ],
)
def test_count_values_of_every_dtype(values: np.ndarray, expected: dict[str, int], nulls: int) -> None:
    assert count_values(values) == (expected, nulls)


def test_unhashable_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unhashable"):
        count_values(np.array([[1], [2], None], dtype=object))


def test_merge_under_the_cap_is_exact() -> None:
    rng = np.random.default_rng(1)
    values = np.array([f"c{i}" for i in range(300)], dtype=object)[rng.zipf(1.5, 50_000) % 300]
    values[rng.integers(0, values.size, 100)] = None
    whole = CategoricalProfile.from_array(values)
    merged = CategoricalProfile.from_array(values[:12_345]).merge(
        CategoricalProfile.from_array(values[12_345:])
    )
    assert merged == whole
    assert whole.counts == {k: v for k, v in Counter(values.tolist()).items() if k is not None}


def test_cap_keeps_the_most_frequent_and_bounds_the_rest() -> None:
    values = np.array([f"v{i % 50}" if i % 3 else "common" for i in range(3000)])
    profile = CategoricalProfile.from_array(values, max_categories=10)
    assert len(profile.top) == 10
    assert profile.top[0] == ("common", 1000)
    assert profile.count == 3000
    assert profile.truncated
    assert profile.other == 3000 - sum(profile.counts.values())
    assert abs(profile.distinct() - 51) <= 1.5


@given(
    chunks=st.lists(
        st.lists(st.sampled_from([f"k{i}" for i in range(12)]), max_size=40), min_size=1, max_size=5
    ),
    cap=st.integers(min_value=1, max_value=14),
)
def test_merged_counts_respect_the_stated_bound(chunks: list[list[str]], cap: int) -> None:
    profiles = [CategoricalProfile.from_array(np.array(c, dtype=object), max_categories=cap) for c in chunks]
    merged = profiles[0]
    for profile in profiles[1:]:
        merged = merged.merge(profile)
    truth = Counter(v for c in chunks for v in c)
    assert merged.count == sum(truth.values())
    assert len(merged.top) <= cap
    for value, count in truth.items():
        kept = merged.counts.get(value)
        if kept is None:
            assert count <= merged.other
        else:
            assert kept <= count <= kept + merged.other
    if len(truth) <= cap:
        assert merged.counts == dict(truth)
        assert merged.other == 0


def test_mismatched_caps_are_refused() -> None:
    with pytest.raises(InvalidInput, match="max_categories"):
        CategoricalProfile(max_categories=5).merge(CategoricalProfile(max_categories=6))


def test_dict_round_trip_and_damage() -> None:
    profile = CategoricalProfile.from_array(np.array(["a", "b", "a", None], dtype=object), max_categories=1)
    data = json.loads(json.dumps(profile.to_dict(), allow_nan=False))
    assert CategoricalProfile.from_dict(data) == profile
    data["count"] += 1
    with pytest.raises(InvalidInput, match="inconsistent"):
        CategoricalProfile.from_dict(data)


def test_text_profile_keeps_lengths_and_distinct_only() -> None:
    rng = np.random.default_rng(4)
    values = np.array(
        [f"review number {i} says " + "x" * int(k) for i, k in enumerate(rng.integers(0, 40, 5000))]
    )
    values = values.astype(object)
    values[:10] = None
    profile = TextProfile.from_array(values)
    present = [v for v in values.tolist() if v is not None]
    lengths = np.array([len(v) for v in present])
    assert (profile.count, profile.nulls) == (4990, 10)
    assert (profile.length.min, profile.length.max) == (lengths.min(), lengths.max())
    assert profile.length.mean == pytest.approx(lengths.mean())
    assert abs(profile.distinct() - 4990) <= 3 * 0.0163 * 4990
    merged = TextProfile.from_array(values[:2000]).merge(TextProfile.from_array(values[2000:]))
    assert merged.hll == profile.hll
    assert merged.length.sketch == profile.length.sketch
    assert TextProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert "review" not in json.dumps(profile.to_dict())
