"""Calibration of a classifier's probabilities on a labelled reference window, stored as plain JSON.

Confidence-based performance estimation (`stats.estimation`) reads each probability as the chance that the
label is that class, so it is only as good as the model's calibration. `fit_calibrator` learns a monotone map
per class on reference rows whose labels are known and says whether the result can be trusted:

```
fit_calibrator(y, proba, classes=...)   -> Calibrator   Platt or isotonic, one map per class column
  .before / .after                      CalibrationCheck of the raw and of the calibrated probabilities
  .apply(proba)                         calibrated probabilities (rows renormalised when multiclass)
  .to_dict() / Calibrator.from_dict()   thresholds and values, or Platt's two coefficients: no pickle
check_calibration(y, proba, classes=...) -> CalibrationCheck   ECE against what a calibrated model would show
calibration_error(y, proba, classes=...) -> float              the ECE alone
```
As NannyML does, the calibrated probabilities are judged out of fold (fit on 4/5 of the rows, scored on the
rest), since an isotonic map scored on its own rows is perfect by construction; the map is kept only if the
raw probabilities fail the check and the map lowers that error, else the calibrator is the identity. Binary models get one map, on the probability of the
second class (the positive one, as in `stats.metrics`); multiclass models one map per class, one-vs-rest,
with rows renormalised to sum to 1 (as scikit-learn's `CalibratedClassifierCV`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.nulls import is_null

Method = Literal["isotonic", "platt", "identity"]
Verdict = Literal["calibrated", "miscalibrated", "inconclusive"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

FORMAT_VERSION = 1
BINS = 10  # equal-mass bins of the ECE
TOLERANCE = 0.03  # an ECE below this is immaterial: CBPE's accuracy is then off by about as much at most
NOISE_DRAWS = 200
NOISE_QUANTILE = 0.95
_EPS = 1e-12  # Platt scaling reads logit(p); p is kept this far from 0 and 1


@dataclass(frozen=True)
class CalibrationCheck:
    """How far probabilities are from the observed frequencies, and whether that matters.

    `ece` is the expected calibration error: per class column (the positive one when binary) the rows are cut
    into `BINS` equal-mass bins by probability and the gaps |mean probability - observed frequency| are
    averaged, weighted by bin size; the worst class counts. `noise` is the ECE that a perfectly calibrated
    model would still show on these rows at the 95th percentile (labels drawn from the probabilities), so
    `verdict` is "miscalibrated" only when `ece` exceeds both `noise` and `tolerance`, "calibrated" when it
    exceeds neither, and "inconclusive" when too few rows leave the noise above the tolerance.
    """

    rows: int
    ece: float
    noise: float
    tolerance: float
    verdict: Verdict

    @property
    def reliable(self) -> bool:
        """True when confidence-based estimates from these probabilities can be trusted."""
        return self.verdict == "calibrated"

    @property
    def message(self) -> str:
        """One sentence for reports."""
        figures = (
            f"ECE {self.ece:.3f} on {self.rows} rows (noise {self.noise:.3f}, tolerance {self.tolerance})"
        )
        if self.verdict == "calibrated":
            return f"calibrated: {figures}"
        if self.verdict == "miscalibrated":
            return f"miscalibrated: {figures}; confidence-based estimates are unreliable, fit a calibrator"
        return f"inconclusive: {figures}; too few labelled rows to tell, use a larger reference window"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationCheck:
        """Inverse of `to_dict`."""
        if data["verdict"] not in ("calibrated", "miscalibrated", "inconclusive"):
            raise InvalidInput(f"unknown calibration verdict {data['verdict']!r}")
        numbers = {name: float(data[name]) for name in ("ece", "noise", "tolerance")}
        return cls(rows=int(data["rows"]), verdict=data["verdict"], **numbers)


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map; build with `fit_calibrator`, store with `to_dict`.

    `maps` holds one entry per calibrated column (binary: the positive column only): for "isotonic" the
    pair (thresholds, values) read by linear interpolation and clipped at the ends, as scikit-learn's
    `IsotonicRegression` predicts; for "platt" the pair ((a,), (b,)) of sigmoid(a * logit(p) + b); for
    "identity" nothing.
    """

    classes: tuple[Any, ...]
    method: Method
    maps: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
    before: CalibrationCheck
    after: CalibrationCheck

    @property
    def reliable(self) -> bool:
        """True when the calibrated probabilities passed the out-of-fold check (CBPE can be trusted)."""
        return self.after.reliable

    def apply(self, probabilities: npt.ArrayLike) -> FloatArray:
        """Calibrated copy of `probabilities` (one column per class, in the order of `classes`)."""
        proba = probability_matrix(probabilities, columns=len(self.classes))
        return _apply(self.method, self.maps, proba)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form: classes, method, the maps as lists of floats, and both checks."""
        return {
            "format": FORMAT_VERSION,
            "classes": list(self.classes),
            "method": self.method,
            "maps": [{"x": list(x), "y": list(y)} for x, y in self.maps],
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """Inverse of `to_dict`; raises InvalidInput for an unknown format or method, or malformed maps."""
        if data.get("format") != FORMAT_VERSION:
            raise InvalidInput(f"unknown calibrator format {data.get('format')!r}; expected {FORMAT_VERSION}")
        method = data["method"]
        if method not in ("isotonic", "platt", "identity"):
            raise InvalidInput(f"unknown calibration method {method!r}")
        classes = tuple(data["classes"])
        maps = tuple(
            (tuple(float(v) for v in entry["x"]), tuple(float(v) for v in entry["y"]))
            for entry in data["maps"]
        )
        expected = 0 if method == "identity" else (1 if len(classes) == 2 else len(classes))
        if len(maps) != expected or any(len(x) != len(y) or not x for x, y in maps):
            raise InvalidInput(f"a {method} calibrator for {len(classes)} classes needs {expected} maps")
        return cls(
            classes=classes,
            method=method,
            maps=maps,
            before=CalibrationCheck.from_dict(data["before"]),
            after=CalibrationCheck.from_dict(data["after"]),
        )


def fit_calibrator(
    y_true: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    *,
    classes: Sequence[Any] | npt.NDArray[Any],
    method: Method | Literal["auto"] = "auto",
    folds: int = 5,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> Calibrator:
    """Fit a calibration map on labelled reference rows and check it out of fold (see the module docstring).

    `classes` are the model's classes in the order of the probability columns; every label must be one of
    them. method="auto" fits Platt scaling, and isotonic regression only when it beats Platt out of fold
    by more than half the check's noise: isotonic blocks at the ends of the score range rest on few rows
    and spike to 0 or 1, which biased estimated accuracy by up to 0.03 when inputs shifted there, where
    Platt stayed within 0.015 (tests/stats/test_stats_performance.py). Deterministic for a given `seed`.
    """
    class_list = class_list_of(classes)
    proba = probability_matrix(probabilities, columns=len(class_list))
    columns = _label_columns(y_true, class_list, rows=proba.shape[0])
    if method not in ("auto", "isotonic", "platt", "identity"):
        raise InvalidInput(
            f"unknown calibration method {method!r}; use 'auto', 'isotonic', 'platt' or 'identity'"
        )
    if folds < 2 or proba.shape[0] < 2 * folds:
        raise InvalidInput(f"fit_calibrator needs folds >= 2 and at least 2 rows per fold; got {folds} folds")
    before = _check(columns, proba, tolerance=tolerance, seed=seed)
    # NannyML keeps a calibrator whenever it lowers the error on unseen rows. We also leave probabilities
    # that pass the check alone: a map adds its own noise, which covariate shift then carries into the
    # estimates, for no gain on the reference.
    if method == "identity" or before.verdict == "calibrated":
        return Calibrator(tuple(class_list), "identity", (), before, before)
    fold_of = np.random.default_rng(seed).permutation(proba.shape[0]) % folds
    candidates: list[Method] = ["platt", "isotonic"] if method == "auto" else [method]
    checks = {
        name: _out_of_fold(name, columns, proba, fold_of=fold_of, tolerance=tolerance, seed=seed)
        for name in candidates
    }
    chosen = candidates[0]
    if method == "auto" and checks["isotonic"].ece < checks["platt"].ece - checks["platt"].noise / 2:
        chosen = "isotonic"
    if checks[chosen].ece >= before.ece:
        return Calibrator(tuple(class_list), "identity", (), before, before)
    return Calibrator(tuple(class_list), chosen, _fit_maps(chosen, columns, proba), before, checks[chosen])


def _out_of_fold(
    method: Method, columns: IntArray, proba: FloatArray, *, fold_of: IntArray, tolerance: float, seed: int
) -> CalibrationCheck:
    """The check of probabilities each calibrated by a map fitted on the other folds."""
    out_of_fold = np.empty_like(proba)
    for fold in range(int(fold_of.max()) + 1):
        held = fold_of == fold
        out_of_fold[held] = _apply(method, _fit_maps(method, columns[~held], proba[~held]), proba[held])
    return _check(columns, out_of_fold, tolerance=tolerance, seed=seed)


def check_calibration(
    y_true: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    *,
    classes: Sequence[Any] | npt.NDArray[Any],
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> CalibrationCheck:
    """Check probabilities against labels not used to fit them (a later window, or a model's raw output)."""
    class_list = class_list_of(classes)
    proba = probability_matrix(probabilities, columns=len(class_list))
    columns = _label_columns(y_true, class_list, rows=proba.shape[0])
    return _check(columns, proba, tolerance=tolerance, seed=seed)


def calibration_error(
    y_true: npt.ArrayLike, probabilities: npt.ArrayLike, *, classes: Sequence[Any] | npt.NDArray[Any]
) -> float:
    """Expected calibration error over equal-mass bins, worst class (see `CalibrationCheck`)."""
    class_list = class_list_of(classes)
    proba = probability_matrix(probabilities, columns=len(class_list))
    columns = _label_columns(y_true, class_list, rows=proba.shape[0])
    return _ece(_one_hot(columns, proba.shape[1]), proba, _bins(proba))


# ------------------------------------------------------------------------------------ inputs (shared)


def class_list_of(classes: Sequence[Any] | npt.NDArray[Any]) -> list[Any]:
    """The model's classes as a list of plain values; at least two, no duplicates."""
    class_list = [_plain(label) for label in np.asarray(classes, dtype=object).reshape(-1).tolist()]
    if len(class_list) < 2:
        raise InvalidInput(
            f"classes must name at least two classes, in probability-column order; got {class_list}"
        )
    if len(set(class_list)) != len(class_list):
        raise InvalidInput(f"classes {class_list} holds duplicates; each class must appear once")
    return class_list


def probability_matrix(values: npt.ArrayLike, *, columns: int) -> FloatArray:
    """`values` as a finite float matrix of `columns` columns with entries in [0, 1]; raises otherwise."""
    try:
        proba = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"probabilities must be a matrix of numbers: {exc}") from exc
    if proba.ndim != 2 or proba.shape[1] != columns:
        raise InvalidInput(
            f"probabilities must have one column per class ({columns}); got shape {proba.shape}"
        )
    if not np.isfinite(proba).all() or (proba < 0.0).any() or (proba > 1.0).any():
        raise InvalidInput("probabilities must be finite and in [0, 1]; pass predict_proba output")
    return proba


def _label_columns(y_true: npt.ArrayLike, class_list: list[Any], *, rows: int) -> IntArray:
    truth = np.asarray(y_true, dtype=object).reshape(-1)
    if truth.size != rows:
        raise InvalidInput(f"y_true has {truth.size} rows but probabilities have {rows}")
    where = {label: column for column, label in enumerate(class_list)}
    columns = np.array([where.get(_plain(label), -1) for label in truth.tolist()], dtype=np.intp)
    if (columns < 0).any():
        bad = truth[columns < 0][0]
        what = "missing labels" if is_null(bad) else f"labels that are not classes (e.g. {bad!r})"
        raise InvalidInput(f"y_true holds {int((columns < 0).sum())} {what}; calibrate on labelled rows only")
    return columns


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------- checks


def _check(columns: IntArray, proba: FloatArray, *, tolerance: float, seed: int) -> CalibrationCheck:
    bins = _bins(proba)
    ece = _ece(_one_hot(columns, proba.shape[1]), proba, bins)
    # Labels drawn from the probabilities themselves: the ECE a calibrated model shows by chance alone.
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(proba / proba.sum(axis=1, keepdims=True).clip(min=_EPS), axis=1)
    draws = np.empty(NOISE_DRAWS)
    for draw in range(NOISE_DRAWS):
        labels = (rng.random((proba.shape[0], 1)) > cumulative).sum(axis=1).clip(max=proba.shape[1] - 1)
        draws[draw] = _ece(_one_hot(labels, proba.shape[1]), proba, bins)
    noise = float(np.quantile(draws, NOISE_QUANTILE))
    verdict: Verdict = (
        "miscalibrated"
        if ece > max(noise, tolerance)
        else "calibrated"
        if noise <= tolerance
        else "inconclusive"
    )
    return CalibrationCheck(int(proba.shape[0]), ece, noise, tolerance, verdict)


def _bins(proba: FloatArray) -> list[tuple[int, IntArray]]:
    """Per checked column (binary: the positive one) the bin of every row, bins of about equal mass."""
    checked = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    found = []
    for column in checked:
        edges = np.quantile(proba[:, column], np.linspace(0.0, 1.0, BINS + 1)[1:-1])
        found.append((column, np.searchsorted(edges, proba[:, column], side="right").astype(np.intp)))
    return found


def _ece(hits: FloatArray, proba: FloatArray, bins: list[tuple[int, IntArray]]) -> float:
    worst = 0.0
    for column, bin_of in bins:
        gap = np.bincount(bin_of, weights=proba[:, column] - hits[:, column], minlength=BINS + 1)
        worst = max(worst, float(np.abs(gap).sum()) / proba.shape[0])  # sum over bins of n_b/n * |mean gap|
    return worst


def _one_hot(columns: IntArray, width: int) -> FloatArray:
    hits = np.zeros((columns.size, width))
    hits[np.arange(columns.size), columns] = 1.0
    return hits


# ------------------------------------------------------------------------------------------------ maps


def _fit_maps(
    method: Method, columns: IntArray, proba: FloatArray
) -> tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]:
    calibrated = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    fit = _fit_isotonic if method == "isotonic" else _fit_platt
    return tuple(fit(proba[:, column], (columns == column).astype(np.float64)) for column in calibrated)


def _apply(
    method: Method, maps: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...], proba: FloatArray
) -> FloatArray:
    if method == "identity":
        return proba.copy()
    mapped = [_map_column(method, x, y, proba[:, i if len(maps) > 1 else 1]) for i, (x, y) in enumerate(maps)]
    if len(maps) == 1:
        return np.column_stack([1.0 - mapped[0], mapped[0]])
    out = np.column_stack(mapped)
    totals = out.sum(axis=1, keepdims=True)
    # A row every map sent to 0 has no calibrated share to renormalise; it keeps the model's own row.
    return np.where(totals > 0.0, out / np.where(totals > 0.0, totals, 1.0), proba)


def _map_column(method: Method, x: tuple[float, ...], y: tuple[float, ...], p: FloatArray) -> FloatArray:
    if method == "isotonic":
        return np.asarray(np.interp(p, np.asarray(x), np.asarray(y)), dtype=np.float64)
    logit = np.log(np.clip(p, _EPS, 1.0 - _EPS)) - np.log1p(-np.clip(p, _EPS, 1.0 - _EPS))
    return _sigmoid(x[0] * logit + y[0])


def _fit_isotonic(scores: FloatArray, hits: FloatArray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pool-adjacent-violators on the distinct scores; stored as the ends of each constant stretch."""
    from scipy.optimize import isotonic_regression  # type: ignore[import-untyped]  # lazy: stats stays light

    distinct, counts = np.unique(scores, return_counts=True)
    order = np.argsort(scores, kind="stable")
    sums = np.add.reduceat(hits[order], np.concatenate(([0], np.cumsum(counts)[:-1])))
    fitted = isotonic_regression(sums / counts, weights=counts.astype(np.float64), increasing=True).x
    # Inner points of a constant stretch add nothing to the interpolation; dropping them keeps the JSON small.
    keep = np.ones(fitted.size, dtype=np.bool_)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return tuple(distinct[keep].tolist()), tuple(np.clip(fitted[keep], 0.0, 1.0).tolist())


def _fit_platt(scores: FloatArray, hits: FloatArray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Logistic regression of the label on logit(score): the two coefficients minimising log loss."""
    from scipy.optimize import minimize  # lazy, as above

    clipped = np.clip(scores, _EPS, 1.0 - _EPS)
    logit = np.log(clipped) - np.log1p(-clipped)

    def loss(params: FloatArray) -> tuple[float, FloatArray]:
        z = params[0] * logit + params[1]
        # log(1 + e^z) - y z, written with logaddexp so large |z| neither overflows nor loses precision
        value = float(np.sum(np.logaddexp(0.0, z) - hits * z))
        residual = _sigmoid(z) - hits
        return value, np.array([float(residual @ logit), float(residual.sum())])

    # The slope is kept >= 0: a calibrator maps scores to probabilities without reversing their order (on few
    # or noisy rows an unconstrained fit can turn the ranking upside down).
    bounds = [(0.0, None), (None, None)]
    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=bounds)
    a, b = (float(v) for v in result.x)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise InvalidInput("Platt scaling did not converge on these rows; use method='isotonic'")
    return (a,), (b,)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.exp(-np.logaddexp(0.0, -z))
