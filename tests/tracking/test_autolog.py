"""`loopml.autolog()`: scikit-learn fits logged as runs (params, training metrics, search children, skops model)."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sklearn = pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

import numpy as np  # noqa: E402 - after the skips
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import all_estimators  # noqa: E402

import loopml  # noqa: E402
from loopml.core.errors import InvalidInput  # noqa: E402
from loopml.tracking.active_run import ActiveRun  # noqa: E402
from loopml.tracking.records import Run, RunStatus  # noqa: E402
from loopml.tracking.tracker import Tracker, configure, use_tracker  # noqa: E402


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    tracker = configure(project_dir=tmp_path, capture_git=False, capture_packages=False)
    yield tracker
    loopml.autolog(disable=True)
    use_tracker(None)
    tracker.close()


@pytest.fixture
def client(tracker: Tracker) -> loopml.Client:
    return loopml.Client(tracker)


def all_runs(client: loopml.Client) -> list[Run]:
    return client.search_runs().runs


def breast_cancer() -> tuple[Any, Any]:
    return load_breast_cancer(return_X_y=True)


def scaled_logreg() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


# -- a fit without an active run ------------------------------------------------------------------------------


def test_pipeline_fit_makes_one_finished_run_with_params_metrics_tags(client: loopml.Client) -> None:
    x, y = breast_cancer()
    loopml.autolog()
    model = scaled_logreg().fit(x, y)

    runs = all_runs(client)
    assert len(runs) == 1  # the steps' own fits are not logged
    run = runs[0]
    assert run.name == "Pipeline"
    assert run.status is RunStatus.FINISHED
    assert loopml.active_run() is None
    assert run.params["logisticregression__C"] == "1.0"
    assert run.params["logisticregression__max_iter"] == "1000"
    assert run.params["logisticregression"] == "LogisticRegression"  # estimator values by class name
    assert run.params["steps"].startswith("[('standardscaler', StandardScaler())")
    assert run.params["training_rows"] == "569"
    assert run.params["training_columns"] == "30"
    assert run.tags["estimator_class"] == "sklearn.pipeline.Pipeline"
    assert run.tags["estimator_name"] == "Pipeline"
    for key in ("accuracy_score", "precision_score", "recall_score", "f1_score", "roc_auc", "score"):
        assert 0.95 < run.metrics[f"training_{key}"] <= 1.0, key
    assert 0.0 < run.metrics["training_log_loss"] < 0.2
    assert run.metrics["training_score"] == pytest.approx(model.score(x, y))


def test_model_artifact_loads_back_with_skops_and_predicts_the_same(
    tracker: Tracker, client: loopml.Client
) -> None:
    x, y = breast_cancer()
    loopml.autolog()
    model = scaled_logreg().fit(x, y)

    run = all_runs(client)[0]
    artifacts = {a.path: a for a in client.list_artifacts(run.run_id)}
    assert set(artifacts) == {"model/model.skops", "model/requirements.txt"}
    data = tracker.blobs.get_bytes(artifacts["model/model.skops"].digest)
    loaded = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    requirements = tracker.blobs.get_bytes(artifacts["model/requirements.txt"].digest).decode().splitlines()
    assert [line.split("==")[0] for line in requirements] == ["scikit-learn", "skops", "numpy"]
    assert requirements[0] == f"scikit-learn=={sklearn.__version__}"


def test_options_turn_off_model_and_dataset_info(client: loopml.Client) -> None:
    x, y = breast_cancer()
    loopml.autolog(log_models=False, log_datasets_info=False)
    scaled_logreg().fit(x, y)

    run = all_runs(client)[0]
    assert client.list_artifacts(run.run_id) == []
    assert "training_rows" not in run.params
    assert "training_columns" not in run.params
    assert "training_accuracy_score" in run.metrics


def test_sample_weight_is_used_for_training_metrics(client: loopml.Client) -> None:
    x, y = breast_cancer()
    x = StandardScaler().fit_transform(x)
    weight = np.random.default_rng(0).uniform(0.1, 3.0, size=len(y))
    loopml.autolog()
    model = LogisticRegression(max_iter=1000).fit(x, y, sample_weight=weight)

    metrics = all_runs(client)[0].metrics
    proba = model.predict_proba(x)
    assert metrics["training_log_loss"] == pytest.approx(log_loss(y, proba, sample_weight=weight))
    assert metrics["training_log_loss"] != pytest.approx(log_loss(y, proba))
    assert metrics["training_score"] == pytest.approx(model.score(x, y, sample_weight=weight))


# -- an active run ---------------------------------------------------------------------------------------------


def test_fit_inside_an_active_run_logs_into_it(client: loopml.Client) -> None:
    x, y = breast_cancer()
    loopml.autolog()
    with loopml.start_run(name="mine") as active:
        scaled_logreg().fit(x, y)
        assert loopml.active_run() is active
        assert client.get_run(active.run_id).status is RunStatus.RUNNING

    runs = all_runs(client)
    assert [r.run_id for r in runs] == [active.run_id]
    run = runs[0]
    assert run.status is RunStatus.FINISHED
    assert run.params["logisticregression__C"] == "1.0"
    assert run.tags["estimator_name"] == "Pipeline"
    assert "training_f1_score" in run.metrics
    assert {a.path for a in client.list_artifacts(run.run_id)} == {
        "model/model.skops",
        "model/requirements.txt",
    }


# -- regressors and searches -----------------------------------------------------------------------------------


def test_regressor_metrics(client: loopml.Client) -> None:
    x, y = load_diabetes(return_X_y=True)
    loopml.autolog()
    model = LinearRegression().fit(x, y)

    run = all_runs(client)[0]
    assert run.name == "LinearRegression"
    assert run.tags["estimator_class"] == "sklearn.linear_model._base.LinearRegression"
    metrics = run.metrics
    assert math.sqrt(metrics["training_mean_squared_error"]) == pytest.approx(
        metrics["training_root_mean_squared_error"]
    )
    assert 2000 < metrics["training_mean_squared_error"] < 4000
    assert 30 < metrics["training_mean_absolute_error"] < 60
    assert 0.4 < metrics["training_r2_score"] < 0.7
    assert metrics["training_score"] == pytest.approx(model.score(x, y))
    assert not any(k.startswith("training_accuracy") for k in metrics)


@pytest.mark.parametrize(("max_tuning_runs", "expected_children"), [(5, 4), (2, 2), (0, 0)])
def test_grid_search_logs_best_params_and_top_candidates(
    client: loopml.Client, max_tuning_runs: int, expected_children: int
) -> None:
    x, y = load_iris(return_X_y=True)
    loopml.autolog(max_tuning_runs=max_tuning_runs)
    search = GridSearchCV(scaled_logreg(), {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]}, cv=3)
    search.fit(x, y)

    runs = all_runs(client)
    parents = [r for r in runs if r.parent_run_id is None]
    assert len(parents) == 1  # no run for the clones fitted inside the search
    parent = parents[0]
    assert parent.name == "GridSearchCV"
    assert parent.status is RunStatus.FINISHED
    assert parent.params["best_logisticregression__C"] == str(search.best_params_["logisticregression__C"])
    assert parent.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert 0.9 < parent.metrics["training_accuracy_score"] <= 1.0
    assert 0.9 < parent.metrics["training_roc_auc"] <= 1.0  # multiclass, one-vs-rest

    children = sorted((r for r in runs if r.parent_run_id == parent.run_id), key=lambda r: r.name)
    assert len(children) == expected_children == min(max_tuning_runs, 4)
    assert len(runs) == 1 + expected_children
    results = search.cv_results_
    for rank, child in enumerate(children, start=1):
        i = list(results["rank_test_score"]).index(rank)
        assert child.name == f"candidate-{rank}"
        assert child.status is RunStatus.FINISHED
        assert child.params["logisticregression__C"] == str(results["params"][i]["logisticregression__C"])
        assert child.metrics["mean_test_score"] == pytest.approx(results["mean_test_score"][i])
        assert child.metrics["std_test_score"] == pytest.approx(results["std_test_score"][i])


# -- failures --------------------------------------------------------------------------------------------------


def test_failing_fit_raises_the_original_error_and_fails_the_run(client: loopml.Client) -> None:
    x, y = breast_cancer()
    with pytest.raises(ValueError, match="inconsistent numbers of samples") as plain:
        LogisticRegression().fit(x, y[:10])
    loopml.autolog()
    with pytest.raises(ValueError, match="inconsistent numbers of samples") as logged:
        LogisticRegression().fit(x, y[:10])

    assert type(logged.value) is type(plain.value)
    assert str(logged.value) == str(plain.value)
    run = all_runs(client)[0]
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.startswith("ValueError: ")
    assert loopml.active_run() is None


def test_logging_errors_never_break_the_fit(
    client: loopml.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("store is on fire")

    def no_dump(*_args: Any, **_kwargs: Any) -> bytes:
        raise TypeError("cannot dump this")

    monkeypatch.setattr(ActiveRun, "log_params", broken)
    monkeypatch.setattr(ActiveRun, "log_metrics", broken)
    monkeypatch.setattr(skops_io, "dumps", no_dump)
    x, y = breast_cancer()
    loopml.autolog()
    estimator = scaled_logreg()
    with caplog.at_level(logging.WARNING, logger="loopml.tracking.autolog"):
        assert estimator.fit(x, y) is estimator

    run = all_runs(client)[0]
    assert run.status is RunStatus.FINISHED
    assert run.tags["autolog_model_error"] == "TypeError: cannot dump this"
    assert run.tags["estimator_name"] == "Pipeline"
    assert client.list_artifacts(run.run_id) == []
    assert "store is on fire" in caplog.text
    assert "cannot dump this" in caplog.text


def test_autolog_without_scikit_learn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.utils", None)
    with pytest.raises(InvalidInput, match=r"pip install 'loopml\[sklearn\]'"):
        loopml.autolog()


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_max_tuning_runs_must_be_a_non_negative_int(value: Any) -> None:
    with pytest.raises(InvalidInput, match="max_tuning_runs"):
        loopml.autolog(max_tuning_runs=value)


# -- patching ---------------------------------------------------------------------------------------------------


def test_autolog_twice_does_not_double_wrap_and_disable_restores_every_fit(tracker: Tracker) -> None:
    originals = {cls: cls.__dict__["fit"] for _, cls in all_estimators() if "fit" in cls.__dict__}
    original, original_search = LogisticRegression.fit, GridSearchCV.fit
    loopml.autolog()
    loopml.autolog()

    patched = LogisticRegression.fit
    assert patched is not original
    assert patched.__wrapped__ is original  # type: ignore[attr-defined]
    assert patched.__name__ == "fit"
    assert patched.__doc__ == original.__doc__
    assert GridSearchCV.fit is not original_search  # inherited fit: patched on the class defining it

    loopml.autolog(disable=True)
    assert LogisticRegression.fit is original
    assert GridSearchCV.fit is original_search
    for cls, fit in originals.items():
        assert cls.__dict__["fit"] is fit, cls
    loopml.autolog(disable=True)  # idempotent
    assert LogisticRegression.fit is original
