"""TableProfile: kind inference, merges (exact, associative, refused when mismatched), JSON with a version."""

from __future__ import annotations

import itertools
import json
import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import loopml.stats
from loopml.core.errors import InvalidInput
from loopml.stats import (
    CategoricalProfile,
    LogicalType,
    NumericProfile,
    TableProfile,
    TextProfile,
    merge,
    profile_column,
    profile_columns,
)


def test_all_is_pinned() -> None:
    assert sorted(loopml.stats.__all__) == sorted(
        [
            "FORMAT_VERSION", "CategoricalProfile", "ColumnProfile", "HyperLogLog", "LogicalType",
            "NumericProfile", "QuantileSketch", "TableProfile", "TextProfile", "UniformSketch", "merge",
            "profile_column", "profile_columns",
        ]
    )  # fmt: skip
    for name in loopml.stats.__all__:
        assert hasattr(loopml.stats, name), name


def table(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sentences = np.array(
        [f"customer {i} wrote a long comment about the product" for i in range(n)], dtype=object
    )
    return {
        "amount": rng.lognormal(size=n),
        "age": rng.integers(18, 90, n),
        "country": np.array(["fr", "de", "us", None], dtype=object)[rng.integers(0, 4, n)],
        "active": rng.random(n) < 0.3,
        "seen": np.datetime64("2024-01-01T00:00:00", "ns")
        + rng.integers(0, 10**15, n).astype("timedelta64[ns]"),
        "comment": sentences,
        "wait": rng.integers(0, 10**9, n).astype("timedelta64[ns]"),
    }


def test_kinds_are_inferred_from_dtypes_and_values() -> None:
    profile = profile_columns(table())
    assert dict(profile.kinds) == {
        "amount": "numeric",
        "age": "numeric",
        "country": "categorical",
        "active": "boolean",
        "seen": "datetime",
        "comment": "text",
        "wait": "numeric",
    }
    assert profile.rows == 2000
    assert isinstance(profile.columns["comment"], TextProfile)
    assert isinstance(profile.columns["active"], CategoricalProfile)
    assert isinstance(profile.columns["seen"], NumericProfile)


def test_object_booleans_and_short_strings() -> None:
    kind, profile = profile_column(np.array([True, None, False, True], dtype=object))
    assert kind is LogicalType.BOOLEAN
    assert isinstance(profile, CategoricalProfile)
    assert profile.counts == {"True": 2, "False": 1}
    assert profile.nulls == 1
    ids = np.array([f"id{i}" for i in range(500)])  # unique but short: categorical, not text
    assert profile_column(ids)[0] is LogicalType.CATEGORICAL
    assert profile_column(np.array([], dtype=object))[0] is LogicalType.CATEGORICAL


def test_explicit_kinds_override_inference() -> None:
    columns = {
        "code": np.array([1, 2, 2, 3]),
        "price": np.array(["1.5", None, "2", None], dtype=object),
        "when": np.array(["2024-01-01", "2024-02-01", None, "2024-03-01"], dtype=object),
        "note": np.array(["a", "b", "a", "c"]),
    }
    kinds = {"code": "categorical", "price": LogicalType.NUMERIC, "when": "datetime", "note": "text"}
    profile = profile_columns(columns, kinds=kinds)
    assert dict(profile.kinds) == kinds
    code = profile.columns["code"]
    assert isinstance(code, CategoricalProfile)
    assert code.counts == {"2": 2, "1": 1, "3": 1}
    price = profile.columns["price"]
    assert isinstance(price, NumericProfile)
    assert (price.count, price.nulls, price.mean) == (2, 2, 1.75)
    when = profile.columns["when"]
    assert isinstance(when, NumericProfile)
    assert (when.count, when.nulls) == (3, 1)
    with pytest.raises(InvalidInput, match="only True, False"):
        profile_column(np.array(["yes", "no"]), "boolean")
    with pytest.raises(InvalidInput, match="unknown logical type"):
        profile_column(np.array([1]), "ordinal")
    with pytest.raises(InvalidInput, match="as datetimes"):
        profile_column(np.array(["soon"], dtype=object), "datetime")
    with pytest.raises(InvalidInput, match="not given"):
        profile_columns(columns, kinds={"missing": "text"})


def assert_equal_but_moments(a: TableProfile, b: TableProfile) -> None:
    assert (a.rows, dict(a.kinds)) == (b.rows, dict(b.kinds))
    for name, left in a.columns.items():
        right = b.columns[name]
        if isinstance(left, NumericProfile) and isinstance(right, NumericProfile):
            assert replace(left, mean=0.0, m2=0.0) == replace(right, mean=0.0, m2=0.0), name
            scale = max(abs(left.min or 0.0), abs(left.max or 0.0), 1.0)
            assert math.isclose(left.mean, right.mean, rel_tol=1e-9, abs_tol=1e-12 * scale), name
            assert math.isclose(left.m2, right.m2, rel_tol=1e-9, abs_tol=1e-12 * scale**2 * left.count), name
        elif isinstance(left, TextProfile) and isinstance(right, TextProfile):
            assert replace(left, length=right.length) == right, name
            assert_equal_but_moments(
                TableProfile(left.count, {"n": left.length}, {"n": LogicalType.NUMERIC}),
                TableProfile(right.count, {"n": right.length}, {"n": LogicalType.NUMERIC}),
            )
        else:
            assert left == right, name


def test_merge_of_chunks_equals_profile_of_whole() -> None:
    columns = table(6000, seed=3)
    kinds = profile_columns(columns).kinds
    cuts = [0, 1, 2500, 2501, 6000]
    parts = [
        profile_columns({k: v[a:b] for k, v in columns.items()}, kinds=kinds)
        for a, b in itertools.pairwise(cuts)
    ]
    assert_equal_but_moments(merge(*parts), profile_columns(columns))
    assert_equal_but_moments(merge(parts[0]), parts[0])


def test_mismatched_merges_are_refused() -> None:
    a = profile_columns({"x": np.arange(3.0), "y": np.array(["a", "b", "c"])})
    with pytest.raises(InvalidInput, match="different columns"):
        a.merge(profile_columns({"x": np.arange(3.0)}))
    with pytest.raises(InvalidInput, match="categorical in one profile and text"):
        a.merge(profile_columns({"x": np.arange(3.0), "y": np.array(["a", "b", "c"])}, kinds={"y": "text"}))
    with pytest.raises(InvalidInput, match="max_categories"):
        a.merge(profile_columns({"x": np.arange(3.0), "y": np.array(["a", "b", "c"])}, max_categories=2))


def test_json_round_trip_with_version() -> None:
    profile = profile_columns(table(3000, seed=9))
    data = json.loads(json.dumps(profile.to_dict(), allow_nan=False))
    assert data["version"] == 1
    assert TableProfile.from_dict(data) == profile


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.pop("rows"), "missing the field 'rows'"),
        (lambda d: d["columns"]["x"].update(kind="fancy"), "malformed"),
        (lambda d: d["columns"]["x"].update(kind="text"), "missing the field"),
        (lambda d: d.update(rows=4), "profiles 3 rows, the table has 4"),
        (lambda d: d["columns"]["x"]["hll"].update(registers=[1, 2]), "packed string"),
    ],
)
def test_damaged_dicts_are_refused(change: object, message: str) -> None:
    data = profile_columns({"x": np.arange(3.0)}).to_dict()
    change(data)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message):
        TableProfile.from_dict(data)


def test_bad_columns_are_refused() -> None:
    with pytest.raises(InvalidInput, match="equally long"):
        profile_columns({"a": np.arange(3), "b": np.arange(4)})
    with pytest.raises(InvalidInput, match="1-D"):
        profile_columns({"a": np.zeros((2, 2))})
    with pytest.raises(InvalidInput, match="dtype"):
        profile_columns({"a": np.array([1j])})
    empty = profile_columns({})
    assert empty.rows == 0
    assert TableProfile.from_dict(empty.to_dict()) == empty


def test_pickle_round_trip() -> None:
    profile = profile_columns(table(500, seed=2))
    assert pickle.loads(pickle.dumps(profile)) == profile


def test_constructor_checks_kinds_and_rows() -> None:
    numeric = NumericProfile.from_array(np.arange(3.0))
    with pytest.raises(InvalidInput, match="cannot hold a NumericProfile"):
        TableProfile(rows=3, columns={"x": numeric}, kinds={"x": "text"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput, match="one logical type per column"):
        TableProfile(rows=3, columns={"x": numeric}, kinds={})


def test_profiles_are_immutable() -> None:
    profile = profile_columns({"x": np.arange(3.0)})
    with pytest.raises(TypeError):
        profile.columns["y"] = profile.columns["x"]  # type: ignore[index]


finite_or_missing = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
small_table = st.integers(min_value=0, max_value=12).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "num": st.lists(finite_or_missing, min_size=n, max_size=n),
            "cat": st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n),
        }
    )
)


def profile_small(data: dict[str, list[object]]) -> TableProfile:
    columns = {"num": np.array(data["num"], dtype=np.float64), "cat": np.array(data["cat"], dtype=object)}
    return profile_columns(columns, kinds={"num": "numeric", "cat": "categorical"})


@given(a=small_table, b=small_table, c=small_table)
def test_merge_is_associative_commutative_and_equals_the_whole(
    a: dict[str, list[object]], b: dict[str, list[object]], c: dict[str, list[object]]
) -> None:
    pa, pb, pc = profile_small(a), profile_small(b), profile_small(c)
    left = merge(merge(pa, pb), pc)
    assert_equal_but_moments(left, merge(pa, merge(pb, pc)))
    assert_equal_but_moments(left, merge(pc, pb, pa))
    whole = profile_small({k: a[k] + b[k] + c[k] for k in a})
    assert_equal_but_moments(left, whole)
