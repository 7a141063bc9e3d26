"""Tabular steps as plain functions: split methods and their choice, clean's report, features, train's guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer

from loopml.core.errors import InvalidInput
from loopml.pipelines.tabular import clean, make_features, split, task_of, train


def timed_frame(rows: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-01", periods=rows, freq="D")
    order = rng.permutation(rows)  # shuffled, so the split must sort
    return pd.DataFrame({"ts": times[order], "x": rng.normal(size=rows), "y": rng.integers(0, 2, rows)})


def labelled(labels: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(len(labels), dtype=float), "y": labels})


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


# --- split ----------------------------------------------------------------------------------------------


def test_time_split_puts_only_newer_rows_in_test() -> None:
    frame = timed_frame()
    parts = split(frame, target="y", test_size=0.2)
    assert parts.method == "time"
    assert parts.time_column == "ts"
    assert (len(parts.train), len(parts.test)) == (40, 10)
    assert parts.test["ts"].min() > parts.train["ts"].max()
    assert parts.test["ts"].is_monotonic_increasing
    assert sorted([*parts.train.index, *parts.test.index]) == list(range(50))


def days(*counts: int) -> pd.DataFrame:
    """A frame of `counts[i]` rows on day i, with a regression target."""
    times = [
        pd.Timestamp("2024-01-01") + pd.Timedelta(days=day) for day, n in enumerate(counts) for _ in range(n)
    ]
    return pd.DataFrame({"ts": times, "y": np.arange(float(len(times)))})


@pytest.mark.parametrize(
    ("counts", "test_rows"),
    [
        ((12, 4, 4), 4),  # 5 wanted; tied day 1 to test would give 8, to train 4: train is closer
        ((14, 4, 2), 6),  # 5 wanted; tied day 1 to test gives 6, to train 2: test is closer
        ((13, 4, 3), 7),  # 7 or 3 are equally close to 5: test wins
        ((2, 8), 8),  # ties to train would leave no test row, so they all go to test
    ],
)
def test_time_split_keeps_rows_with_the_cut_timestamp_together(
    counts: tuple[int, ...], test_rows: int
) -> None:
    frame = days(*counts)
    parts = split(frame, target="y", test_size=0.25 if len(frame) == 20 else 0.5)
    assert set(parts.train["ts"]).isdisjoint(set(parts.test["ts"]))
    assert len(parts.test) == test_rows


def test_time_split_fails_when_one_timestamp_spans_every_possible_cut() -> None:
    with pytest.raises(InvalidInput, match=r"cannot split on 'ts': rows at 2024-01-02 00:00:00 span the cut"):
        split(days(1, 9), target="y")


def test_auto_picks_time_from_time_column_even_with_two_datetime_columns() -> None:
    frame = timed_frame().assign(other=pd.Timestamp("2020-01-01"))
    assert split(frame, target="y", time_column="ts").method == "time"
    assert split(frame, target="y").method == "stratified"  # two datetime columns, none named
    with pytest.raises(InvalidInput, match=r"needs time_column.*2 datetime columns"):
        split(frame, target="y", method="time")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["a", "b"] * 10, "stratified"),
        ([True, False] * 10, "stratified"),
        ([0, 1, 2, 0, 1] * 4, "stratified"),
        (list(range(25)), "random"),  # integer with more than 20 values: regression
        ([0.5, 1.5] * 10, "random"),  # float: regression
        (["a"] * 19 + ["b"], "random"),  # a class with one row cannot be stratified
    ],
)
def test_auto_picks_the_documented_method(labels: list[object], expected: str) -> None:
    assert split(labelled(labels), target="y").method == expected


def test_stratified_split_keeps_class_ratios(cancer: pd.DataFrame) -> None:
    frame = labelled(["rare"] * 20 + ["common"] * 180)
    parts = split(frame, target="y", method="stratified", test_size=0.25)
    for side in (parts.train, parts.test):
        assert (side["y"] == "rare").mean() == pytest.approx(0.1, abs=0.02)
    cancer_parts = split(cancer, target="target", seed=5)
    assert cancer_parts.method == "stratified"
    assert cancer_parts.test["target"].mean() == pytest.approx(cancer["target"].mean(), abs=0.01)


def test_split_is_deterministic_for_a_seed_and_keeps_row_order() -> None:
    frame = labelled(["a", "b", "c"] * 30)
    first, again, other = (split(frame, target="y", seed=seed) for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(first.test, again.test)
    pd.testing.assert_frame_equal(first.train, again.train)
    assert list(first.test.index) != list(other.test.index)
    assert first.test.index.is_monotonic_increasing
    train_rows, test_rows = first  # unpacks like a pair
    assert len(train_rows) + len(test_rows) == 90
    assert len(test_rows) == 18


def test_random_split_ignores_the_target_classes() -> None:
    parts = split(labelled(["a", "b"] * 10), target="y", method="random", test_size=0.3)
    assert parts.method == "random"
    assert (len(parts.train), len(parts.test)) == (14, 6)


def test_split_errors_are_precise() -> None:
    frame = labelled(["a", "b"] * 5)
    with pytest.raises(
        InvalidInput, match=r"target column 'label' is not in the frame; columns are \['x', 'y'\]"
    ):
        split(frame, target="label")
    for size in (0, 1, 1.5, -0.1, True):
        with pytest.raises(InvalidInput, match="test_size must be a fraction strictly between 0 and 1"):
            split(frame, target="y", test_size=size)
    with pytest.raises(InvalidInput, match=r"time column 'when' is not in the frame"):
        split(frame, target="y", time_column="when")
    with pytest.raises(InvalidInput, match=r"time column 'y' has dtype str, not datetime; convert it"):
        split(frame, target="x", time_column="y")
    with pytest.raises(InvalidInput, match=r"too few rows to split: 3 rows .* gives 2 train and 1 test"):
        split(labelled(["a", "b", "a"]), target="y")
    with pytest.raises(
        InvalidInput, match=r"cannot stratify on 'y': classes with fewer than 2 rows \{'c': 1\}"
    ):
        split(labelled(["a", "b"] * 5 + ["c"]), target="y", method="stratified")
    with pytest.raises(InvalidInput, match=r"unknown split method 'sideways'"):
        split(frame, target="y", method="sideways")  # type: ignore[arg-type]
    gappy = timed_frame(10)
    gappy.loc[3, "ts"] = pd.NaT
    with pytest.raises(InvalidInput, match=r"time column 'ts' has 1 missing values"):
        split(gappy, target="y")


def test_task_of_follows_the_stratification_rule() -> None:
    assert task_of(pd.Series(["a", "b"])) == "classification"
    assert task_of(pd.Series([True, False])) == "classification"
    assert task_of(pd.Series(["a", "b"], dtype="category")) == "classification"
    assert task_of(pd.Series(range(20))) == "classification"
    assert task_of(pd.Series(range(21))) == "regression"
    assert task_of(pd.Series([0.0, 1.0])) == "regression"


# --- clean ----------------------------------------------------------------------------------------------


def messy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1.0, np.nan, 3.0, 3.0, 1.0, 5.0, 3.0],
            "b": ["x", "y", None, "y", "x", "y", "z"],
            "y": [0, 1, 1, np.nan, 0, 1, 0],
        }
    )


def test_clean_reports_what_it_did_and_leaves_the_input_alone() -> None:
    frame = messy()
    before = frame.copy(deep=True)
    out, report = clean(frame, target="y")
    assert report == {
        "rows_in": 7,
        "rows_out": 5,
        "duplicates_dropped": 1,
        "missing_target_dropped": 1,
        "imputed": {"a": 1, "b": 1},
    }
    assert list(out.index) == [0, 1, 2, 5, 6]
    assert out.loc[1, "a"] == 3.0  # median of 1, 3, 5, 3
    assert out.loc[2, "b"] == "y"  # most frequent of x, y, y, z
    assert out["y"].dtype == np.int64  # the missing target was all that made it float
    assert not out.isna().any().any()
    pd.testing.assert_frame_equal(frame, before)
    out.loc[0, "a"] = 99.0
    pd.testing.assert_frame_equal(frame, before)


def test_clean_strategies() -> None:
    out, report = clean(messy(), target="y", impute="mean", drop_duplicates=False)
    assert report["duplicates_dropped"] == 0
    assert report["rows_out"] == 6
    assert out.loc[1, "a"] == pytest.approx((1 + 3 + 1 + 5 + 3) / 5)
    untouched, report = clean(messy(), impute="none")
    assert report["imputed"] == {}
    assert report["missing_target_dropped"] == 0
    assert untouched["a"].isna().sum() == 1
    tie, _ = clean(pd.DataFrame({"c": ["q", None, "p", "p", "q"]}), impute="most_frequent")
    assert tie.loc[1, "c"] == "q"  # a tie goes to the value seen first


def test_clean_fills_columns_whatever_their_names() -> None:
    frame = pd.DataFrame({0: [1.0, np.nan, 3.0], 1: ["a", "a", None]})
    out, report = clean(frame)
    assert list(out.columns) == [0, 1]
    assert out[0].tolist() == [1.0, 2.0, 3.0]
    assert out[1].tolist() == ["a", "a", "a"]
    assert report["imputed"] == {"0": 1, "1": 1}


def test_clean_errors() -> None:
    with pytest.raises(InvalidInput, match=r"target column 'label' is not in the frame"):
        clean(messy(), target="label")
    with pytest.raises(InvalidInput, match=r"unknown impute strategy 'zero'"):
        clean(messy(), impute="zero")  # type: ignore[arg-type]


# --- make_features --------------------------------------------------------------------------------------


def mixed(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "num": rng.normal(size=rows),
            "count": rng.integers(0, 5, rows),
            "color": rng.choice(["red", "green", "blue"], rows),
            "flag": rng.integers(0, 2, rows).astype(bool),
            "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "id": np.arange(rows),
            "y": rng.integers(0, 2, rows),
        }
    )


def test_make_features_picks_columns_by_dtype_and_drops_datetimes() -> None:
    features = make_features(mixed(), target="y", drop=["id"])
    assert isinstance(features, ColumnTransformer)
    assert not hasattr(features, "transformers_")  # unfitted
    columns = {name: cols for name, _, cols in features.transformers}
    assert columns == {"numeric": ["num", "count"], "boolean": ["flag"], "categorical": ["color"]}
    frame = mixed()
    out = features.fit_transform(frame)
    assert out.shape == (40, 2 + 3 + 2)
    unseen = frame.head(2).assign(color=["purple", None], num=[np.nan, 1.0])
    assert np.isfinite(features.transform(unseen)).all()  # unknown category and missing values are fine


def test_nullable_and_pyarrow_dtypes_train_and_predict_with_missing_values() -> None:
    rows = 40
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "count": pd.array(rng.integers(0, 9, rows), dtype="Int64"),
            "ratio": pd.array(rng.normal(size=rows), dtype="double[pyarrow]"),
            "flag": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
            "name": pd.array(rng.choice(["ann", "bob"], rows), dtype="string[python]"),
            "city": pd.array(rng.choice(["oslo", "rome"], rows), dtype="string[pyarrow]"),
            "size": pd.Categorical(rng.choice(["s", "m", "l"], rows)),
            "y": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
        }
    )
    gaps = frame.copy()
    for column in ("count", "ratio", "flag", "name", "city", "size"):
        gaps.loc[[1, 5], column] = None
    assert task_of(frame["y"]) == "classification"
    assert task_of(frame["name"]) == "classification"
    features = make_features(gaps, target="y")
    groups = {name: cols for name, _, cols in features.transformers}
    assert groups == {
        "numeric": ["count", "ratio"],
        "nullable_boolean": ["flag"],
        "categorical": ["size"],
        "nullable_text": ["name", "city"],
    }
    model = train(gaps, target="y", estimator="LogisticRegression")
    assert model.predict(gaps.drop(columns="y")).shape == (rows,)


def test_make_features_options() -> None:
    ordinal = make_features(mixed(), target="y", numeric="minmax", categorical="ordinal", drop=["id"])
    out = ordinal.fit_transform(mixed())
    assert out.shape == (40, 4)
    assert out[:, :2].min() == 0.0
    assert out[:, :2].max() == 1.0


def test_make_features_errors() -> None:
    with pytest.raises(InvalidInput, match=r"no feature columns left .* columns \['when'\]"):
        make_features(mixed()[["when", "y"]], target="y")
    with pytest.raises(InvalidInput, match=r"drop names columns not in the frame: \['nope'\]"):
        make_features(mixed(), target="y", drop=["nope"])
    with pytest.raises(InvalidInput, match=r"target column 'label' is not in the frame"):
        make_features(mixed(), target="label")


# --- train ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["os.system", "system", "subprocess.Popen", "builtins.eval", "sklearnx.Foo", "sklearn.base.clone", ""],
)
def test_train_resolves_names_inside_scikit_learn_only(name: str) -> None:
    with pytest.raises(InvalidInput, match="estimator"):
        train(mixed(), target="y", estimator=name)


def test_train_refuses_unknown_and_invalid_params() -> None:
    with pytest.raises(
        InvalidInput, match=r"unknown params for LogisticRegression: \['depth'\]; valid .*'C'"
    ):
        train(mixed(), target="y", estimator="LogisticRegression", params={"depth": 3})
    with pytest.raises(InvalidInput, match=r"invalid params for LogisticRegression: .*'C'"):
        train(mixed(), target="y", estimator="LogisticRegression", params={"C": -1.0})


def test_train_accepts_bare_and_dotted_names(cancer: pd.DataFrame) -> None:
    frame = mixed()
    forest = train(frame, target="y", estimator="RandomForestClassifier", params={"n_estimators": 5}, seed=4)
    assert forest.named_steps["model"].random_state == 4
    assert forest.predict(frame.drop(columns="y")).shape == (40,)
    ridge = train(frame.drop(columns="y"), target="num", estimator="sklearn.linear_model.Ridge")
    assert type(ridge.named_steps["model"]).__name__ == "Ridge"
    logistic = train(cancer, target="target", estimator="LogisticRegression", params={"max_iter": 5000})
    assert logistic.score(cancer.drop(columns="target"), cancer["target"]) > 0.95


def test_train_is_deterministic_and_does_not_fit_the_given_features() -> None:
    frame = mixed()
    features = make_features(frame, target="y", drop=["id"])
    models = [
        train(
            frame,
            target="y",
            estimator="RandomForestClassifier",
            params={"n_estimators": 5},
            features=features,
        )
        for _ in range(2)
    ]
    assert not hasattr(features, "transformers_")
    probabilities = [model.predict_proba(frame.drop(columns="y")) for model in models]
    np.testing.assert_array_equal(probabilities[0], probabilities[1])


def test_train_errors_on_missing_targets_and_empty_frames() -> None:
    gappy = mixed().astype({"y": float})
    gappy.loc[0, "y"] = np.nan
    with pytest.raises(InvalidInput, match=r"1 rows have no value for target 'y'"):
        train(gappy, target="y", estimator="LogisticRegression")
    with pytest.raises(InvalidInput, match="empty frame"):
        train(mixed().head(0), target="y", estimator="LogisticRegression")
