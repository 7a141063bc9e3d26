"""Serializers of step outputs: exact round trips, canonical content hashes, refusals and the registry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from loopml.core.errors import InvalidInput, NotFound
from loopml.pipelines import serializers
from loopml.pipelines.serializers import (
    JsonSerializer,
    Serializer,
    SerializerRegistry,
    SkopsSerializer,
    Unserializable,
    UntrustedArtifact,
    default_registry,
    deserialize,
    register_serializer,
    serialize,
)
from loopml.registry.model_hash import NotCanonical, canonical_hash


def round_trip(value: Any) -> Any:
    stored = serialize(value)
    return deserialize(stored.data, stored.serializer)


def content_hash(value: Any) -> str:
    return serialize(value).content_hash


class Opaque:
    """A type no built-in serializer knows."""


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


class PointSerializer(Serializer):
    name = "point"
    version = 3
    extension = ".point"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Point)

    def dump(self, value: Any) -> bytes:
        return f"{value.x},{value.y}".encode()

    def load(self, data: bytes) -> Any:
        x, y = data.decode().split(",")
        return Point(int(x), int(y))


class IntListSerializer(Serializer):
    """Claims values the json built-in also accepts, to show which one wins."""

    name = "intlist"
    version = 1
    extension = ".txt"

    def accepts(self, value: Any) -> bool:
        return type(value) is list and all(type(v) is int for v in value)

    def dump(self, value: Any) -> bytes:
        return " ".join(map(str, value)).encode()

    def load(self, data: bytes) -> Any:
        return [int(v) for v in data.split()]


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# json


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        1.0,
        -0.0,
        10**400,
        "naïve ✓",
        "lone \ud800 surrogate",
        (1, 2.0, "3"),
        [(), [], {}],
        float("nan"),
        [float("inf"), float("-inf")],
        {"b": 1, "a": {"z": (None, [1.5, (True,)]), "y": []}},
        {"__loopml__": "tuple", "items": [1]},
        {"x": {"__loopml__": {"__loopml__": 1}}},
    ],
)
def test_json_round_trips_exactly(value: Any) -> None:
    back = round_trip(value)
    # repr tells a tuple from a list, 1 from 1.0 and True, shows NaN and keeps the dict order.
    assert repr(back) == repr(value)
    assert serialize(value).serializer == "json@1"


def test_json_artifact_stays_plain_json_for_common_values() -> None:
    value = {"model": "rf", "scores": [0.5, 1.0, 2], "ok": True, "note": None}
    data = serialize(value).data
    assert json.loads(data) == value
    assert list(json.loads(data)) == ["model", "scores", "ok", "note"]


def test_json_hash_ignores_key_order_but_stored_bytes_keep_it() -> None:
    first, second = serialize({"a": 1, "b": {"c": 2, "d": 3}}), serialize({"b": {"d": 3, "c": 2}, "a": 1})
    assert first.content_hash == second.content_hash
    assert first.data != second.data
    assert list(deserialize(second.data, second.serializer)) == ["b", "a"]


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),
        (1, 1.0),
        (True, 1.0),
        ([1, 2], (1, 2)),
        ({"a": [1, 2, 3]}, {"a": [1, 2, 4]}),
        ("1", 1),
        (None, "null"),
        (float("nan"), "nan"),
        (0.0, -0.0),
    ],
)
def test_json_hash_tells_types_and_values_apart(left: Any, right: Any) -> None:
    assert content_hash(left) != content_hash(right)


@pytest.mark.parametrize(
    "value",
    [{1: "int key"}, {"a": {2}}, [Opaque()], np.float64(1.0), {"x": bytearray(b"1")}, nested_lists(101)],
)
def test_json_refuses_what_it_cannot_round_trip(value: Any) -> None:
    assert not JsonSerializer().accepts(value)


def test_json_accepts_nesting_of_one_hundred_and_refuses_a_cycle() -> None:
    assert JsonSerializer().accepts(nested_lists(100))
    cycle: list[Any] = []
    cycle.append(cycle)
    assert not JsonSerializer().accepts(cycle)


def test_json_load_rejects_unknown_tags() -> None:
    with pytest.raises(InvalidInput, match="not a LoopML json artifact"):
        deserialize(b'{"__loopml__": "set", "items": []}', "json@1")


# npy


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.array([1.5, np.nan, -np.inf]),
        np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        np.array(["a", "bcd"]),
        np.array(3.0),
        np.zeros((0, 5), dtype=bool),
        np.array([(1, 2.5)], dtype=[("a", "u1"), ("b", "<f8")]),
    ],
)
def test_npy_round_trips(array: np.ndarray[Any, Any]) -> None:
    stored = serialize(array)
    back = deserialize(stored.data, stored.serializer)
    assert stored.serializer == "npy@1"
    assert type(back) is np.ndarray
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_npy_keeps_fortran_order_and_hashes_it_like_the_c_copy() -> None:
    c_order = np.arange(12.0).reshape(3, 4)
    fortran = np.asfortranarray(c_order)
    back = round_trip(fortran)
    assert back.flags.f_contiguous
    np.testing.assert_array_equal(back, c_order)
    assert content_hash(fortran) == content_hash(c_order)
    assert content_hash(c_order[:, ::2]) == content_hash(np.ascontiguousarray(c_order[:, ::2]))


def test_npy_hash_changes_with_one_value_dtype_or_shape() -> None:
    base = np.arange(6, dtype=np.int64)
    changed = base.copy()
    changed[4] = 40
    hashes = {
        content_hash(base),
        content_hash(changed),
        content_hash(base.astype(np.int32)),
        content_hash(base.reshape(2, 3)),
    }
    assert len(hashes) == 4
    assert content_hash(base) == content_hash(np.arange(6, dtype=np.int64))


def test_npy_hash_of_records_ignores_padding_bytes() -> None:
    dtype = np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 16})
    left, right = np.zeros(2, dtype=dtype), np.zeros(2, dtype=dtype)
    right.view(np.uint8).reshape(2, 16)[:, 1:8] = 0xFF  # garbage between the fields
    assert content_hash(left) == content_hash(right)


def test_object_arrays_are_unserializable_and_say_why() -> None:
    with pytest.raises(Unserializable, match=r"numpy\.ndarray holding Python objects.*pickle"):
        serialize(np.array([{"a": 1}, None], dtype=object))


def test_numpy_scalars_are_unserializable_with_a_hint() -> None:
    with pytest.raises(Unserializable, match=r"numpy\.float64.*\.item\(\)"):
        serialize(np.float64(0.5))


def test_masked_arrays_are_not_stored_as_plain_arrays() -> None:
    with pytest.raises(Unserializable, match=r"numpy\.ma\.MaskedArray"):
        serialize(np.ma.masked_array([1, 2], mask=[True, False]))


def test_npy_load_refuses_other_bytes() -> None:
    with pytest.raises(InvalidInput, match="npy"):
        deserialize(b"PK\x03\x04 a zip", "npy@1")


# parquet


def test_dataframe_round_trips_with_dtypes_and_index() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=3, freq="h", tz="Europe/Paris"),
            "naive": pd.to_datetime(["2020-01-01", None, "2021-06-30"]),
            "kind": pd.Categorical(["b", "a", "b"], categories=["b", "a"], ordered=True),
            "name": ["x", None, "zé"],
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "value": [1.5, np.nan, 3.0],
        },
        index=pd.Index([30, 10, 20], name="id"),
    )
    stored = serialize(frame)
    assert stored.serializer == "parquet@1"
    assert stored.python_type == "pandas.DataFrame"
    pd.testing.assert_frame_equal(deserialize(stored.data, stored.serializer), frame)


@pytest.mark.parametrize("index", ["range", "shifted", "multi", "strings"])
def test_dataframe_indexes_round_trip(index: str) -> None:
    pd = pytest.importorskip("pandas")
    labels = {
        "range": pd.RangeIndex(3),
        "shifted": pd.RangeIndex(5, 11, 2),
        "multi": pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")], names=["n", "s"]),
        "strings": pd.Index(["r1", "r2", "r3"]),
    }[index]
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.1, 0.2, 0.3]}, index=labels)
    pd.testing.assert_frame_equal(round_trip(frame), frame)


def test_dataframe_integer_column_names_round_trip() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({0: [1, 2], 7: ["a", "b"]})
    pd.testing.assert_frame_equal(round_trip(frame), frame)


@pytest.mark.parametrize("name", ["price", None, 3, ("a", 1)])
def test_series_round_trips_with_its_name(name: Any) -> None:
    pd = pytest.importorskip("pandas")
    series = pd.Series([1.0, 2.5, None], index=["x", "y", "z"], name=name)
    back = round_trip(series)
    assert isinstance(back, pd.Series)
    assert back.name == name
    pd.testing.assert_series_equal(back, series)


def test_arrow_table_round_trips_with_its_metadata() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"a": [1, 2, None], "b": ["x", "y", "z"]}).replace_schema_metadata({"origin": "test"})
    back = round_trip(table)
    assert isinstance(back, pa.Table)
    assert back.equals(table, check_metadata=True)


def test_table_hash_is_over_the_data_not_the_file_or_its_chunks() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]})
    rechunked = pa.concat_tables([table.slice(0, 3), table.slice(3)])
    assert rechunked.column("a").num_chunks == 2
    assert content_hash(rechunked) == content_hash(table)
    changed = pa.table({"a": [*range(9), 99], "b": [str(i) for i in range(10)]})
    assert content_hash(changed) != content_hash(table)


def test_frame_hash_is_canonical_and_sees_every_part_of_the_value() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    same = pd.DataFrame({"a": [1, 2, 3]}).assign(b=["x", "y", "z"])
    assert content_hash(frame) == content_hash(same)
    one_value = frame.copy()
    one_value.loc[2, "a"] = 4
    others = [
        one_value,
        frame.set_axis(pd.RangeIndex(1, 4)),
        frame.rename(columns={"b": "c"}),
        frame["a"],
        frame[["a"]],
        frame["a"].rename("other"),
        frame.astype({"b": "category"}),
    ]
    hashes = {content_hash(value) for value in [frame, *others]}
    assert len(hashes) == len(others) + 1


def test_frames_arrow_cannot_convert_are_unserializable() -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(Unserializable, match=r"pandas\.DataFrame"):
        serialize(pd.DataFrame({"a": [Opaque(), Opaque()]}))
    with pytest.raises(Unserializable, match=r"pandas\.DataFrame"):
        serialize(pd.DataFrame({"a": [1, "x"]}))
    with pytest.raises(Unserializable, match=r"pandas\.DataFrame"):
        serialize(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(Unserializable, match=r"pandas\.DataFrame"):  # names would come back as strings
        serialize(pd.DataFrame([[1, 2]], columns=["a", 7]))


# skops


@pytest.fixture(scope="module")
def training() -> tuple[Any, Any]:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "size": rng.normal(size=60),
            "weight": rng.normal(size=60),
            "color": rng.choice(["red", "green", "blue"], size=60),
        }
    )
    y = (x["size"] + (x["color"] == "red") > 0.3).astype(int)
    return x, y


def make_model(kind: str, *, seed: int = 0) -> Any:
    pytest.importorskip("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if kind == "forest":
        return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=seed)
    if kind == "logistic":
        return LogisticRegression(max_iter=1000)
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["size", "weight"]), ("cat", OneHotEncoder(), ["color"])]
    )
    return Pipeline([("features", columns), ("model", LogisticRegression(max_iter=1000))])


def fit(kind: str, x: Any, y: Any, *, seed: int = 0) -> Any:
    model = make_model(kind, seed=seed)
    return model.fit(x if kind == "pipeline" else x[["size", "weight"]], y)


def features(kind: str, x: Any) -> Any:
    return x if kind == "pipeline" else x[["size", "weight"]]


@pytest.mark.parametrize("kind", ["forest", "logistic", "pipeline"])
def test_skops_model_predicts_the_same_after_loading(kind: str, training: tuple[Any, Any]) -> None:
    x, y = training
    model = fit(kind, x, y)
    stored = serialize(model)
    assert stored.serializer == "skops@1"
    back = deserialize(stored.data, stored.serializer)
    assert type(back) is type(model)
    np.testing.assert_array_equal(back.predict(features(kind, x)), model.predict(features(kind, x)))
    np.testing.assert_allclose(back.predict_proba(features(kind, x)), model.predict_proba(features(kind, x)))


@pytest.mark.parametrize("kind", ["forest", "logistic", "pipeline"])
def test_skops_hash_is_canonical_over_refits(kind: str, training: tuple[Any, Any]) -> None:
    x, y = training
    first, second = serialize(fit(kind, x, y)), serialize(fit(kind, x, y))
    assert first.content_hash == second.content_hash
    assert first.content_hash == content_hash(deserialize(first.data, first.serializer))
    assert first.content_hash != content_hash(make_model(kind))  # unfitted


@pytest.mark.parametrize("kind", ["forest", "logistic", "pipeline"])
def test_skops_hash_changes_with_one_training_value(kind: str, training: tuple[Any, Any]) -> None:
    x, y = training
    changed = x.copy()
    changed.loc[0, "size"] += 0.5
    assert content_hash(fit(kind, x, y)) != content_hash(fit(kind, changed, y))


def test_skops_hash_changes_with_the_random_state(training: tuple[Any, Any]) -> None:
    x, y = training
    assert content_hash(fit("forest", x, y, seed=0)) != content_hash(fit("forest", x, y, seed=1))


def test_skops_hash_follows_a_numpy_random_state_by_its_state(training: tuple[Any, Any]) -> None:
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier

    x, y = training
    hashes = [
        content_hash(
            RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(seed)).fit(
                x[["size"]], y
            )
        )
        for seed in (4, 4, 5)
    ]
    assert hashes[0] == hashes[1] != hashes[2]


def test_skops_hash_of_a_search_ignores_its_timings(training: tuple[Any, Any]) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    x, y = training

    def search() -> Any:
        return GridSearchCV(LogisticRegression(max_iter=1000), {"C": [0.1, 1.0]}, cv=2).fit(x[["size"]], y)

    assert content_hash(search()) == content_hash(search())


def transform_twice(values: Any) -> Any:
    """A function from a module that is not on the skops allow-list."""
    return values * 2


def test_skops_loader_refuses_types_off_the_allow_list() -> None:
    pytest.importorskip("sklearn")
    skops_io = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    data = skops_io.dumps(FunctionTransformer(func=transform_twice))
    name = f"{transform_twice.__module__}.transform_twice"
    with pytest.raises(UntrustedArtifact, match=rf"refused.*{name}"):
        deserialize(data, "skops@1")
    with pytest.raises(UntrustedArtifact, match=r"builtins\.eval"):
        deserialize(skops_io.dumps(FunctionTransformer(func=eval)), "skops@1")
    with pytest.raises(Unserializable, match=name):  # refused when stored, not only when loaded
        serialize(FunctionTransformer(func=transform_twice))

    trusting = SkopsSerializer(trusted_modules=[f"{transform_twice.__module__}."])
    np.testing.assert_array_equal(trusting.load(data).transform(np.array([[1.0, 2.0]])), [[2.0, 4.0]])


def test_skops_refuses_a_pipeline_wrapping_a_custom_estimator() -> None:
    pytest.importorskip("sklearn")
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.pipeline import Pipeline

    class Custom(TransformerMixin, BaseEstimator):
        def fit(self, x: Any, y: Any = None) -> Custom:
            return self

        def transform(self, x: Any) -> Any:
            return x

    with pytest.raises(Unserializable, match=r"Custom"):
        serialize(Custom())  # not an sklearn class: no serializer takes it
    with pytest.raises(Unserializable, match="refuse to load"):
        serialize(Pipeline([("custom", Custom())]))


def test_skops_load_of_damaged_bytes_is_invalid_input() -> None:
    pytest.importorskip("skops")
    with pytest.raises(InvalidInput, match="skops artifact"):
        deserialize(b"not a zip", "skops@1")


# canonical hashing of in-memory values


def test_canonical_hash_tells_scalar_types_apart_and_ignores_dict_order() -> None:
    hashes = {canonical_hash(v) for v in (True, 1, 1.0, "1", np.int64(1), np.float64(1.0), (1,), [1])}
    assert len(hashes) == 8
    assert canonical_hash({"a": 1, 2: [3]}) == canonical_hash({2: [3], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})


def test_canonical_hash_refuses_cycles_and_opaque_objects() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(NotCanonical, match="contains itself"):
        canonical_hash(cycle)
    with pytest.raises(NotCanonical, match="lock"):
        canonical_hash({"guard": threading.Lock()})


# registry


def test_unknown_values_are_unserializable_naming_type_and_serializers() -> None:
    with pytest.raises(Unserializable) as caught:
        serialize(Opaque())
    assert f"{Opaque.__module__}.Opaque" in str(caught.value)
    assert "json@1, npy@1, parquet@1, skops@1" in str(caught.value)


def test_user_serializer_for_a_custom_class_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serializers, "default_registry", SerializerRegistry(default_registry))
    register_serializer(PointSerializer())
    stored = serialize(Point(2, -5))
    assert stored.serializer == "point@3"
    assert stored.python_type == f"{Point.__module__}.Point"
    assert deserialize(stored.data, "point@3") == Point(2, -5)
    assert serializers.default_registry.names()[0] == "point@3"
    assert "point@3" not in default_registry.names()  # the real default registry is untouched


def test_user_serializer_wins_over_builtins_unless_registered_last() -> None:
    first = SerializerRegistry(default_registry)
    first.register(IntListSerializer())
    assert first.for_value([1, 2]).name == "intlist"
    assert first.for_value([1, "2"]).name == "json"
    last = SerializerRegistry(default_registry)
    last.register(IntListSerializer(), first=False)
    assert last.for_value([1, 2]).name == "json"
    assert last.names()[-1] == "intlist@1"


def test_registering_the_same_name_replaces() -> None:
    registry = SerializerRegistry([PointSerializer(), IntListSerializer()])

    class PointV4(PointSerializer):
        version = 4

    registry.register(PointV4(), first=False)
    assert registry.names() == ["intlist@1", "point@4"]
    assert isinstance(registry.by_name("point"), PointV4)


def test_invalid_serializers_are_refused() -> None:
    class Bad(PointSerializer):
        name = "point@2"

    with pytest.raises(InvalidInput, match="name"):
        SerializerRegistry().register(Bad())
    with pytest.raises(InvalidInput, match="subclass Serializer"):
        SerializerRegistry().register(object())  # type: ignore[arg-type]


def test_deserialize_with_unknown_or_mismatched_serializer_says_what_is_wrong() -> None:
    data = serialize([1, 2]).data
    with pytest.raises(NotFound, match=r"no serializer named 'yaml'.*json@1"):
        deserialize(data, "yaml@1")
    with pytest.raises(InvalidInput, match=r"written by json@2 but json@1 is registered"):
        deserialize(data, "json@2")
    with pytest.raises(InvalidInput, match="name@version"):
        deserialize(data, "json")
    assert deserialize(data, "json@1") == [1, 2]


def test_importing_serializers_imports_no_optional_package() -> None:
    code = (
        "import sys, loopml.pipelines.serializers\n"
        "loaded = [m for m in ('pandas', 'pyarrow', 'sklearn', 'skops') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
