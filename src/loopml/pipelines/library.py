"""Reusable steps for tabular ML: load, split, clean, train, evaluate (`from loopml.pipelines import library`).

They wrap the plain functions of `tabular` and `evaluation` as cached steps. The split step registers its
held-out rows as a dataset version, so the registry's promotion gates can evaluate every challenger and
the champion on the same rows; the evaluation step logs its metrics and plots to its run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd

from loopml.core.errors import InvalidInput
from loopml.pipelines import evaluation, tabular
from loopml.pipelines.inputs import DatasetRef
from loopml.pipelines.step import step

BUILTIN = ("breast_cancer", "diabetes", "iris", "wine")


@step
def load_dataset(dataset: DatasetRef) -> pd.DataFrame:
    """The rows of a table dataset version (recorded as an input of the step's run)."""
    content = dataset.load()
    if not isinstance(content, pd.DataFrame):
        raise InvalidInput(f"dataset {dataset} is a {dataset.kind}, not a table: load it in your own step")
    return content


@step
def load_builtin(name: Literal["breast_cancer", "diabetes", "iris", "wine"]) -> pd.DataFrame:
    """One of scikit-learn's bundled data sets as a DataFrame, its label in column `target`."""
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }
    frame: pd.DataFrame = loaders[name](as_frame=True).frame
    return frame


@step(outputs=("train", "test"), in_driver=True)  # it may register the held-out rows
def split_data(
    frame: pd.DataFrame,
    *,
    target: str,
    method: Literal["auto", "random", "stratified", "time"] = "auto",
    test_size: float = 0.2,
    time_column: str | None = None,
    seed: int = 0,
    register_as: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and held-out rows (time-based when the data has a timestamp, so evaluation rows are newest).

    With `register_as`, the held-out rows become a version of that dataset, and the step's run is tagged
    with it, the target column and the primary metric: what promotion gates evaluate models on.
    """
    parts = tabular.split(
        frame, target=target, method=method, test_size=test_size, time_column=time_column, seed=seed
    )
    _tag({"loopml.split.method": parts.method})
    if register_as is not None:
        _register_holdout(parts.test, name=register_as, target=target, method=parts.method)
    return parts.train, parts.test


@step(outputs=("frame", "report"))
def clean_data(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    drop_duplicates: bool = True,
    impute: Literal["median", "mean", "most_frequent", "none"] = "median",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows without a target dropped, duplicates dropped, missing values imputed; with a report of each."""
    cleaned, report = tabular.clean(frame, target=target, drop_duplicates=drop_duplicates, impute=impute)
    return cleaned, dict(report)


@step
def build_features(
    frame: pd.DataFrame,
    *,
    target: str,
    numeric: Literal["standard", "minmax", "none"] = "standard",
    categorical: Literal["onehot", "ordinal", "none"] = "onehot",
) -> Any:
    """An unfitted scikit-learn ColumnTransformer for the columns of `frame` (fitted by `train_model`)."""
    return tabular.make_features(frame, target=target, numeric=numeric, categorical=categorical)


@step
def train_model(
    frame: pd.DataFrame,
    *,
    target: str,
    estimator: str,
    params: Mapping[str, Any] | None = None,
    features: Any = None,
    seed: int | None = 0,
) -> Any:
    """A scikit-learn Pipeline (the features, default ones when None, then the estimator) fitted on `frame`."""
    if features is None:
        features = tabular.make_features(frame, target=target)
    return tabular.train(
        frame, target=target, estimator=estimator, params=params, features=features, seed=seed
    )


@step
def evaluate_model(
    model: Any, frame: pd.DataFrame, *, target: str, slice_by: str | None = None
) -> dict[str, Any]:
    """Metrics of `model` on `frame`, logged to the step's run with ROC/PR/residual plots as PNG artifacts.

    Returns {"metrics": ..., "primary_metric": ..., "higher_is_better": ..., "per_slice": ...}.
    """
    from loopml.tracking.fluent import active_run

    result = evaluation.evaluate(model, frame, target=target, slice_by=slice_by)
    run = active_run()
    if run is not None:
        run.log_metrics(result.metrics)
        for name, png in result.plots.items():
            run.log_bytes(png, f"plots/{name}")
        run.set_tags({"loopml.eval.primary_metric": result.primary_metric})
    summary = result.to_dict()
    return {
        "metrics": summary["metrics"],
        "primary_metric": result.primary_metric,
        "higher_is_better": result.higher_is_better,
        "per_slice": summary["per_slice"],
        "confusion_matrix": summary["confusion_matrix"],
    }


@step(cache=False, in_driver=True)
def register_model(model: Any, frame: pd.DataFrame, *, name: str, target: str) -> str:
    """Register `model` in the model registry (training rows `frame` give its signature and row hashes);
    returns `NAME@vN`. The held-out dataset the split step registered becomes the version's evaluation data.

    Not cached: registering is what the call is for, and the same model is recognised by the registry.
    """
    from loopml.models import register

    registered = register(name, model, sample=frame.drop(columns=[target]))
    return registered.version.ref


def _register_holdout(test: pd.DataFrame, *, name: str, target: str, method: str) -> None:
    from loopml.datasets import add

    task = tabular.task_of(test[target])
    primary = "rmse" if task == "regression" else ("roc_auc" if test[target].nunique() == 2 else "f1")
    added = add(name, test.reset_index(drop=True), message=f"held-out {method} split; target={target}")
    _tag(
        {
            "loopml.eval.dataset": added.version.ref,
            "loopml.eval.target": target,
            "loopml.eval.primary_metric": primary,
        }
    )


def _tag(tags: Mapping[str, str]) -> None:
    from loopml.tracking.fluent import active_run

    run = active_run()
    if run is not None:
        run.set_tags(dict(tags))
