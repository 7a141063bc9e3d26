"""Plain functions for tabular training: split a frame, clean it, build a feature transformer, fit a model.

Every function is pure: it takes DataFrames and params, returns new values and never mutates its input, writes
no files and records nothing, so a pipeline step can wrap it and cache its result by its inputs. Randomness
comes only from the `seed` argument.

    parts = split(frame, target="churned")              # Split(train, test, method, time_column)
    train_frame, report = clean(parts.train, target="churned")
    model = train(train_frame, target="churned", estimator="LogisticRegression", params={"C": 0.5})

`task_of` is the one rule, shared by `split` and `evaluation.evaluate`, that tells a classification target
from a regression one.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from loopml.core.errors import InvalidInput

__all__ = ["CleanReport", "Split", "clean", "make_features", "split", "task_of", "train"]

MAX_CLASSES = 20
"""An integer target with at most this many distinct values is a classification target."""

MIN_ROWS_PER_SIDE = 2

# Bare estimator names are looked up in these modules only; dotted names must start with "sklearn.".
# A name reaches here from CLI params, so resolution must never import anything outside scikit-learn.
ESTIMATOR_MODULES = tuple(
    f"sklearn.{name}"
    for name in ("linear_model", "ensemble", "tree", "neighbors", "svm", "naive_bayes", "dummy")
)

SplitMethod = Literal["random", "stratified", "time"]


@dataclass(frozen=True, eq=False)
class Split:
    """The result of `split`: the train and test frames, the method used and the time column (time splits).

    It unpacks like a pair, so `train, test = split(...)` works. `eq=False`: DataFrames have no truth value.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    method: SplitMethod
    time_column: str | None = None

    def __iter__(self) -> Iterator[pd.DataFrame]:
        """Yield train then test."""
        return iter((self.train, self.test))


class CleanReport(TypedDict):
    """What `clean` did: row counts before and after, rows dropped by cause, values imputed per column."""

    rows_in: int
    rows_out: int
    duplicates_dropped: int
    missing_target_dropped: int
    imputed: dict[str, int]


def task_of(target: pd.Series) -> Literal["classification", "regression"]:
    """Classification when the target is object, string, category or bool, or integer with <= 20 values.

    Anything else (floats, integers with many values) is regression. Missing values are not counted.
    """
    if _feature_kind(target.dtype) not in ("numeric", None):
        return "classification"
    small = ptypes.is_integer_dtype(target.dtype) and target.nunique(dropna=True) <= MAX_CLASSES
    return "classification" if small else "regression"


def split(
    frame: pd.DataFrame,
    *,
    target: str,
    method: Literal["auto", "random", "stratified", "time"] = "auto",
    test_size: float = 0.2,
    time_column: str | None = None,
    seed: int = 0,
) -> Split:
    """Split `frame` into train and test rows; returns a `Split` (unpacks as `train, test`).

    method="auto" picks, in order:
    - "time" when `time_column` is given or the frame has exactly one datetime column;
    - "stratified" when `task_of(target)` is classification, every class (missing counts as one) has at
      least 2 rows and each side can hold every class;
    - "random" otherwise (random and stratified ignore `time_column`).

    Test gets ceil(test_size * rows) rows. A time split sorts by time and takes the newest rows as test;
    rows sharing the timestamp at the cut all go to one side, the one that keeps the test fraction closer to
    `test_size` (test on a tie) while both sides keep at least 2 rows. Time splits return rows in time order,
    the others in the frame's order; the index is kept. Raises InvalidInput for a missing target or time
    column, test_size outside (0, 1), a time column that is not datetime or has missing values, fewer than 2
    rows on a side, or a stratified split with a class of fewer than 2 rows.
    """
    _require_column(frame, target, "target")
    if isinstance(test_size, bool) or not isinstance(test_size, int | float) or not 0 < test_size < 1:
        raise InvalidInput(f"test_size must be a fraction strictly between 0 and 1, got {test_size!r}")
    _require_choice("split method", method, ("auto", "random", "stratified", "time"))
    rows, n_test = len(frame), math.ceil(test_size * len(frame))
    if min(n_test, rows - n_test) < MIN_ROWS_PER_SIDE:
        raise InvalidInput(
            f"too few rows to split: {rows} rows with test_size={test_size} gives {rows - n_test} train and "
            f"{n_test} test rows; each side needs at least {MIN_ROWS_PER_SIDE}"
        )

    datetimes = [str(name) for name in frame.columns if ptypes.is_datetime64_any_dtype(frame[name].dtype)]
    if method == "time" or (method == "auto" and (time_column is not None or len(datetimes) == 1)):
        if time_column is None:
            if len(datetimes) != 1:
                raise InvalidInput(
                    f"a time split needs time_column: the frame has {len(datetimes)} datetime columns {datetimes}"
                )
            time_column = datetimes[0]
        return _time_split(frame, time_column=time_column, n_test=n_test, test_size=test_size)

    labels = pd.factorize(frame[target], use_na_sentinel=False)[0]
    problem = _stratify_problem(frame[target], labels, n_test) if method != "random" else None
    if method == "auto":
        classes = task_of(frame[target]) == "classification"
        method = "stratified" if classes and problem is None else "random"
    elif method == "stratified" and problem is not None:
        raise InvalidInput(f"cannot stratify on {target!r}: {problem}")
    stratified = method == "stratified"
    train_pos, test_pos = train_test_split(
        np.arange(len(frame)), test_size=n_test, random_state=seed, stratify=labels if stratified else None
    )
    return Split(
        train=frame.iloc[np.sort(train_pos)],
        test=frame.iloc[np.sort(test_pos)],
        method="stratified" if stratified else "random",
    )


def clean(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    drop_duplicates: bool = True,
    impute: Literal["median", "mean", "most_frequent", "none"] = "median",
) -> tuple[pd.DataFrame, CleanReport]:
    """Return a cleaned copy of `frame` and a report of what changed; `frame` itself is left untouched.

    In order: rows with a missing target are dropped (a target is never imputed); fully duplicated rows are
    dropped, keeping the first; then missing values in the other columns are filled from the rows that
    remain. Numeric and datetime columns get the median, mean or most frequent value as `impute` says; other
    columns (bool too) get their most frequent value (the first seen on a tie); "none" fills nothing.
    Columns with no value at all stay as they are. The index is kept. When dropping missing targets leaves a
    float target of whole numbers only, it becomes int64 again: the missing values were what made it float.

    Fill values come from the frame given: clean the training split, not the whole data set, to keep test
    rows out of them (the transformer from `make_features` imputes on its own as well).
    """
    _require_choice("impute strategy", impute, ("median", "mean", "most_frequent", "none"))
    if target is not None:
        _require_column(frame, target, "target")
    missing_target = int(frame[target].isna().sum()) if target is not None else 0
    # Copies (lazy under copy-on-write), so neither the writes below nor the caller's reach back into `frame`.
    out = frame[frame[target].notna()].copy() if target is not None else frame.copy()
    if missing_target:
        out[target] = _restore_integer(out[target])
    duplicates = int(out.duplicated().sum()) if drop_duplicates else 0
    if duplicates:
        out = out[~out.duplicated(keep="first")].copy()
    imputed: dict[str, int] = {}
    for column in out.columns if impute != "none" else []:
        filled = None if column == target else _impute_column(out[column], impute)
        if filled is not None:
            imputed[str(column)] = int(out[column].isna().sum())
            out[column] = filled
    report = CleanReport(
        rows_in=len(frame),
        rows_out=len(out),
        duplicates_dropped=duplicates,
        missing_target_dropped=missing_target,
        imputed=imputed,
    )
    return out, report


def make_features(
    frame: pd.DataFrame,
    *,
    target: str,
    numeric: Literal["standard", "minmax", "none"] = "standard",
    categorical: Literal["onehot", "ordinal", "none"] = "onehot",
    drop: Sequence[str] = (),
) -> ColumnTransformer:
    """Build an unfitted ColumnTransformer for the columns of `frame` other than `target` and `drop`.

    Columns are chosen by dtype, by name, once, here; each group imputes, then scales or encodes:
    - "numeric" (int, float, nullable and pyarrow ones too; not bool): median imputation, then
      StandardScaler, MinMaxScaler or nothing;
    - "categorical" (object, str, category), "nullable_boolean" (boolean, bool[pyarrow]) and
      "nullable_text" (string dtypes whose missing value is pd.NA): most-frequent imputation, then
      OneHotEncoder(handle_unknown="ignore", dense output), OrdinalEncoder (unknown categories -> -1), or
      nothing for "none" (for estimators that take raw values). "boolean" (numpy bool) is only encoded.
      They are separate groups because scikit-learn cannot mix them: it turns a block of nullable bools
      into floats, refuses numpy bool in SimpleImputer, and misses pd.NA unless told to look for it;
    - datetime, timedelta and other dtypes: dropped. A raw timestamp extrapolates badly (a time split's test
      rows all lie past the training range), and stock scikit-learn classes let skops save the model without
      trusting custom code; derive calendar columns beforehand if wanted.
    Imputation is part of the transformer so that a served model copes with missing values.
    Raises InvalidInput when `target` or a `drop` column is missing, or when no feature column remains.
    """
    _require_column(frame, target, "target")
    if unknown := [name for name in drop if name not in frame.columns]:
        raise InvalidInput(
            f"drop names columns not in the frame: {unknown}; columns are {list(frame.columns)}"
        )
    _require_choice("numeric scaling", numeric, ("standard", "minmax", "none"))
    _require_choice("categorical encoding", categorical, ("onehot", "ordinal", "none"))
    columns = [name for name in frame.columns if name != target and name not in drop]
    kinds: dict[str, list[str]] = {
        kind: [] for kind in ("numeric", "boolean", "nullable_boolean", "categorical", "nullable_text")
    }
    for name in columns:
        if (kind := _feature_kind(frame[name].dtype)) is not None:
            kinds[kind].append(name)
    if not any(kinds.values()):
        raise InvalidInput(
            f"no feature columns left after removing target {target!r}, drop {list(drop)} and "
            f"non-numeric, non-categorical columns {columns}"
        )
    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": "passthrough"}[numeric]
    parts = []
    for kind, names in kinds.items():
        if not names:
            continue
        if kind == "numeric":
            steps = [("impute", SimpleImputer(strategy="median")), ("scale", scaler)]
        elif kind == "boolean":  # numpy bool holds no missing value, and SimpleImputer refuses its dtype
            steps = [("encode", _encoder(categorical))]
        else:
            missing = pd.NA if kind == "nullable_text" else np.nan
            steps = [("impute", SimpleImputer(strategy="most_frequent", missing_values=missing))]
            steps.append(("encode", _encoder(categorical)))
        parts.append((kind, Pipeline(steps), names))
    return ColumnTransformer(parts, remainder="drop")


def train(
    frame: pd.DataFrame,
    *,
    target: str,
    estimator: str,
    params: Mapping[str, Any] | None = None,
    features: ColumnTransformer | None = None,
    seed: int | None = 0,
) -> Pipeline:
    """Fit Pipeline([("features", ...), ("model", ...)]) on `frame` minus `target`; returns the fitted pipeline.

    `estimator` names a scikit-learn class only: a bare class name found in sklearn.linear_model, ensemble,
    tree, neighbors, svm, naive_bayes or dummy ("LogisticRegression"), or a dotted path starting with
    "sklearn." ("sklearn.linear_model.Ridge"). `params` are checked against the estimator's get_params keys.
    `random_state` is set to `seed` when the estimator has one and `params` does not set it (seed=None leaves
    it alone). `features` defaults to `make_features(frame, target=target)`; a given transformer is cloned,
    never fitted in place. Raises InvalidInput for an unknown estimator or param, an invalid param value,
    an empty frame, or rows without a target.
    """
    _require_column(frame, target, "target")
    if frame.empty:
        raise InvalidInput("cannot train on an empty frame")
    if missing := int(frame[target].isna().sum()):
        raise InvalidInput(f"{missing} rows have no value for target {target!r}; drop them first (see clean)")
    model = _configure(_resolve_estimator(estimator), estimator, dict(params or {}), seed)
    transformer = make_features(frame, target=target) if features is None else clone(features)
    pipeline = Pipeline([("features", transformer), ("model", model)])
    try:
        pipeline.fit(frame.drop(columns=[target]), frame[target])
    except ValueError as exc:
        # scikit-learn checks param values only at fit time; surface those as bad input, not a crash.
        if type(exc).__name__ == "InvalidParameterError":
            raise InvalidInput(f"invalid params for {estimator}: {exc}") from exc
        raise
    return pipeline


def _configure(cls: type[Any], name: str, params: dict[str, Any], seed: int | None) -> Any:
    try:
        model = cls()
    except TypeError as exc:
        raise InvalidInput(f"{name} cannot be built without arguments, so it cannot be trained here") from exc
    valid = sorted(model.get_params(deep=False))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InvalidInput(f"unknown params for {name}: {unknown}; valid params are {valid}")
    if seed is not None and "random_state" in valid and "random_state" not in params:
        params["random_state"] = seed
    return model.set_params(**params)


def _resolve_estimator(name: str) -> type[Any]:
    hint = "use a scikit-learn class name such as 'LogisticRegression' or a path like 'sklearn.linear_model.Ridge'"
    if not isinstance(name, str) or not name or not all(part.isidentifier() for part in name.split(".")):
        raise InvalidInput(f"invalid estimator name {name!r}; {hint}")
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        if module_name != "sklearn" and not module_name.startswith("sklearn."):
            raise InvalidInput(f"estimator {name!r} is outside scikit-learn; {hint}")
        modules: tuple[str, ...] = (module_name,)
    else:
        class_name, modules = name, ESTIMATOR_MODULES
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found = getattr(module, class_name, None)
        if isinstance(found, type) and issubclass(found, BaseEstimator) and hasattr(found, "fit"):
            return found
    raise InvalidInput(f"unknown estimator {name!r}; {hint}")


def _feature_kind(dtype: Any) -> str | None:
    """The transformer group of a column (see `make_features`); None for columns that are dropped."""
    if isinstance(dtype, pd.CategoricalDtype) or ptypes.is_object_dtype(dtype):
        return "categorical"
    if ptypes.is_bool_dtype(dtype):
        return "boolean" if dtype == np.dtype(bool) else "nullable_boolean"
    if ptypes.is_string_dtype(dtype):
        return "nullable_text" if getattr(dtype, "na_value", None) is pd.NA else "categorical"
    return "numeric" if ptypes.is_numeric_dtype(dtype) else None


def _encoder(categorical: str) -> Any:
    if categorical == "onehot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if categorical == "ordinal":
        return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    return "passthrough"


def _require_choice(what: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        raise InvalidInput(f"unknown {what} {value!r}; use one of {', '.join(options)}")


def _require_column(frame: pd.DataFrame, name: str, role: str) -> None:
    if name not in frame.columns:
        raise InvalidInput(f"{role} column {name!r} is not in the frame; columns are {list(frame.columns)}")


def _time_split(frame: pd.DataFrame, *, time_column: str, n_test: int, test_size: float) -> Split:
    _require_column(frame, time_column, "time")
    times = frame[time_column]
    if not ptypes.is_datetime64_any_dtype(times.dtype):
        raise InvalidInput(
            f"time column {time_column!r} has dtype {times.dtype}, not datetime; convert it with pd.to_datetime"
        )
    if times.isna().any():
        raise InvalidInput(f"time column {time_column!r} has {int(times.isna().sum())} missing values")
    ordered = frame.sort_values(time_column, kind="stable")
    sorted_times = ordered[time_column]
    cut = sorted_times.iloc[len(frame) - n_test]
    # Two candidate cuts keep equal timestamps together: ties to test, or ties to train.
    candidates = [int((sorted_times >= cut).sum()), int((sorted_times > cut).sum())]
    viable = [n for n in candidates if MIN_ROWS_PER_SIDE <= n <= len(frame) - MIN_ROWS_PER_SIDE]
    if not viable:
        raise InvalidInput(
            f"cannot split on {time_column!r}: rows at {cut} span the cut, leaving fewer than "
            f"{MIN_ROWS_PER_SIDE} rows on a side with test_size={test_size}"
        )
    chosen = min(viable, key=lambda n: abs(n - test_size * len(frame)))
    cut_at = len(frame) - chosen
    return Split(
        train=ordered.iloc[:cut_at], test=ordered.iloc[cut_at:], method="time", time_column=time_column
    )


def _stratify_problem(target: pd.Series, labels: np.ndarray[Any, Any], n_test: int) -> str | None:
    """Why `target` cannot be stratified with `n_test` test rows, or None when it can."""
    counts = target.value_counts(dropna=False)
    small = {str(value): int(count) for value, count in counts.items() if count < MIN_ROWS_PER_SIDE}
    if small:
        return f"classes with fewer than {MIN_ROWS_PER_SIDE} rows {small}; use method='random' or add rows"
    classes, n_train = len(counts), len(labels) - n_test
    if n_test < classes or n_train < classes:
        return (
            f"{classes} classes need at least {classes} rows on each side, got {n_train} train and {n_test} "
            "test rows; raise test_size or use method='random'"
        )
    return None


def _restore_integer(values: pd.Series) -> pd.Series:
    if ptypes.is_float_dtype(values.dtype) and len(values) and bool((values % 1 == 0).all()):
        return values.astype("int64")
    return values


def _impute_column(values: pd.Series, strategy: str) -> pd.Series | None:
    """The column with its missing values filled, or None when it has none (or nothing to fill from)."""
    missing = values.isna()
    if not missing.any() or missing.all():
        return None
    present = values[~missing]
    dtype = values.dtype
    numeric = (ptypes.is_numeric_dtype(dtype) and not ptypes.is_bool_dtype(dtype)) or (
        ptypes.is_datetime64_any_dtype(dtype)
    )
    if numeric and strategy in ("median", "mean"):
        fill: Any = present.median() if strategy == "median" else present.mean()
    else:
        # Unsorted counts keep the order of first appearance and argmax takes the first maximum, so a tie
        # goes to the value seen first: deterministic for a given frame.
        counts = present.value_counts(sort=False)
        fill = counts.index[int(np.argmax(counts.to_numpy()))]
    if ptypes.is_integer_dtype(dtype) and not float(fill).is_integer():
        values = values.astype("Float64")
    return values.fillna(fill)
