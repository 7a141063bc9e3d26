"""`loopml.autolog()`: log scikit-learn fits (params, training metrics, model) without touching user code.

The `fit` of every scikit-learn estimator is wrapped; an outermost fit starts a run when none is active (or
logs into the active one), and fits made inside it (Pipeline steps, search clones) run unlogged. Logging never
breaks a fit: its errors become warnings. Models are saved with skops, never pickle.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.names import check_key
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.fluent import active_run, start_run
from loopml.tracking.records import RunStatus
from loopml.tracking.values import MAX_PARAM_VALUE

_log = logging.getLogger(__name__)
MAX_REPR = 500

_inside_fit: contextvars.ContextVar[bool] = contextvars.ContextVar("loopml_autolog_inside_fit", default=False)
_originals: dict[type, Callable[..., Any]] = {}
_lock = threading.Lock()


@dataclass
class _Options:
    log_models: bool = True
    log_datasets_info: bool = True
    max_tuning_runs: int = 5


_options = _Options()


def autolog(
    *,
    disable: bool = False,
    log_models: bool = True,
    log_datasets_info: bool = True,
    max_tuning_runs: int = 5,
) -> None:
    """Log every scikit-learn `fit`: params, tags, training metrics, search candidates and the skops model.

    Calling it again only updates the options; `disable=True` restores every original `fit`.
    """
    if isinstance(max_tuning_runs, bool) or not isinstance(max_tuning_runs, int) or max_tuning_runs < 0:
        raise InvalidInput(f"max_tuning_runs must be an integer >= 0, got {max_tuning_runs!r}")
    with _lock:
        if disable:
            for cls, original in _originals.items():
                setattr(cls, "fit", original)  # noqa: B010 - restoring the attribute by its name is the point
            _originals.clear()
            return
        try:
            from sklearn.utils import all_estimators  # scikit-learn is optional
        except ImportError:
            raise InvalidInput("autolog needs scikit-learn: pip install 'loopml[sklearn]'") from None
        _options.log_models, _options.log_datasets_info = log_models, log_datasets_info
        _options.max_tuning_runs = max_tuning_runs
        for _, estimator in all_estimators():
            # Patch the class that defines `fit` (GridSearchCV inherits it from BaseSearchCV), once.
            owner = next((c for c in estimator.__mro__ if "fit" in c.__dict__), None)
            if owner is None or owner in _originals or not owner.__module__.startswith("sklearn"):
                continue
            original = owner.__dict__["fit"]
            if inspect.isfunction(original):
                _originals[owner] = original
                setattr(owner, "fit", _wrap(original))  # noqa: B010


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _inside_fit.get():
            return original(self, *args, **kwargs)
        token = _inside_fit.set(True)
        try:
            return _fit_and_log(original, self, args, kwargs)
        finally:
            _inside_fit.reset(token)

    return fit


def _fit_and_log(
    original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    run, own = active_run(), False
    if run is None:
        try:
            run, own = start_run(name=type(estimator).__name__), True
        except Exception as error:  # a broken store must not break the fit
            _log.warning("loopml autolog could not start a run, fitting without logging: %s", error)
            return original(estimator, *args, **kwargs)
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as error:
        if own:
            status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
            _safely(run.end, status, error=f"{type(error).__name__}: {error}")
        raise
    _safely(_log_fit, run, original, estimator, args, kwargs)
    if own:
        _safely(run.end, RunStatus.FINISHED)
    return result


def _log_fit(
    run: ActiveRun,
    original: Callable[..., Any],
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    x, y, sample_weight = _fit_data(original, estimator, args, kwargs)
    _safely(_log_params_and_tags, run, estimator, x)
    if y is not None:
        _safely(_log_training_metrics, run, estimator, x, y, sample_weight)
    if hasattr(estimator, "best_params_"):
        _safely(_log_search, run, estimator)
    if _options.log_models:
        _safely(_log_model, run, estimator)


def _safely(action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        action(*args, **kwargs)
    except Exception as error:  # autologging must never break the user's fit
        _log.warning("loopml autolog: %s failed: %s: %s", action.__name__, type(error).__name__, error)


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def _fit_data(
    original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """(X, y, sample_weight) as passed to fit, whatever their position."""
    try:
        bound = _signature(original).bind_partial(estimator, *args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = {}
    x = bound.get("X", args[0] if args else None)
    return x, bound.get("y", args[1] if len(args) > 1 else None), bound.get("sample_weight")


def _param_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value[:MAX_PARAM_VALUE] if isinstance(value, str) else value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return _param_value(value.item())
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value).__name__
    return repr(value)[:MAX_REPR]


def _clean_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    clean = {}
    for key, value in params.items():
        try:
            clean[check_key("param", f"{prefix}{key}")] = _param_value(value)
        except LoopMLError:
            _log.warning("loopml autolog: skipped param %r (not a valid param name)", f"{prefix}{key}")
    return clean


def _log_params_and_tags(run: ActiveRun, estimator: Any, x: Any) -> None:
    cls = type(estimator)
    run.set_tags({"estimator_class": f"{cls.__module__}.{cls.__qualname__}", "estimator_name": cls.__name__})
    params = _clean_params(estimator.get_params(deep=True))
    if _options.log_datasets_info and x is not None:
        try:
            shape = tuple(getattr(x, "shape", None) or (len(x),))
            params["training_rows"] = int(shape[0])
            if len(shape) >= 2:
                params["training_columns"] = int(shape[1])
        except (TypeError, ValueError, IndexError):
            _log.warning("loopml autolog: could not tell the shape of the training data")
    run.log_params(params)


def _log_training_metrics(run: ActiveRun, estimator: Any, x: Any, y: Any, sample_weight: Any) -> None:
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    weight = {} if sample_weight is None else {"sample_weight": sample_weight}
    computed: dict[str, Callable[[], float]] = {}
    if is_classifier(estimator):
        pred = estimator.predict(x)
        computed["training_accuracy_score"] = lambda: metrics.accuracy_score(y, pred, **weight)
        prf = functools.cache(  # precision, recall and f1 in one pass
            lambda: metrics.precision_recall_fscore_support(
                y, pred, average="weighted", zero_division=0, **weight
            )
        )
        computed["training_precision_score"] = lambda: prf()[0]
        computed["training_recall_score"] = lambda: prf()[1]
        computed["training_f1_score"] = lambda: prf()[2]
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(x)
            labels = getattr(estimator, "classes_", None)
            computed["training_log_loss"] = lambda: metrics.log_loss(y, proba, labels=labels, **weight)
            if proba.shape[1] == 2:
                computed["training_roc_auc"] = lambda: metrics.roc_auc_score(y, proba[:, 1], **weight)
            else:
                computed["training_roc_auc"] = lambda: metrics.roc_auc_score(
                    y, proba, multi_class="ovr", labels=labels, **weight
                )
    elif is_regressor(estimator):
        pred = estimator.predict(x)
        computed["training_mean_squared_error"] = lambda: metrics.mean_squared_error(y, pred, **weight)
        computed["training_root_mean_squared_error"] = lambda: math.sqrt(
            metrics.mean_squared_error(y, pred, **weight)
        )
        computed["training_mean_absolute_error"] = lambda: metrics.mean_absolute_error(y, pred, **weight)
        computed["training_r2_score"] = lambda: metrics.r2_score(y, pred, **weight)
    if hasattr(estimator, "score"):
        computed["training_score"] = lambda: estimator.score(x, y, **weight)
    values = {}
    for key, compute in computed.items():
        try:
            values[key] = float(compute())
        except Exception as error:  # one metric failing must not stop the others
            _log.warning("loopml autolog: could not compute %s: %s: %s", key, type(error).__name__, error)
    run.log_metrics(values)


def _log_search(run: ActiveRun, search: Any) -> None:
    run.log_params(_clean_params(search.best_params_, "best_"))
    if hasattr(search, "best_score_"):
        run.log_metric("best_cv_score", float(search.best_score_))
    results = search.cv_results_
    refit = getattr(search, "refit", True)
    score = "score" if "rank_test_score" in results else refit if isinstance(refit, str) else None
    if score is None or _options.max_tuning_runs == 0:
        return
    ranks = [int(r) for r in results[f"rank_test_{score}"]]
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])[: _options.max_tuning_runs]
    metric_keys = [k for k in results if k.startswith(("mean_test_", "std_test_", "rank_test_"))]
    for i in order:
        with start_run(
            name=f"candidate-{ranks[i]}", nested=True, parent_run_id=run.run_id, tracker=run.tracker
        ) as child:
            child.log_params(_clean_params(results["params"][i]))
            child.log_metrics({k: float(results[k][i]) for k in metric_keys})


def _log_model(run: ActiveRun, estimator: Any) -> None:
    try:
        import skops.io  # optional

        data = skops.io.dumps(estimator)
    except Exception as error:  # any serialisation failure only costs the model artifact
        _log.warning(
            "loopml autolog: could not save the model with skops: %s: %s", type(error).__name__, error
        )
        run.set_tag("autolog_model_error", f"{type(error).__name__}: {error}"[:MAX_REPR])
        return
    run.log_bytes(data, "model/model.skops")
    run.log_bytes(_requirements(), "model/requirements.txt")


@functools.cache
def _requirements() -> bytes:
    return "".join(f"{p}=={version(p)}\n" for p in ("scikit-learn", "skops", "numpy")).encode()
