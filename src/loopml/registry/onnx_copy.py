"""ONNX acceleration: convert a scikit-learn model with skl2onnx and keep the copy only if it predicts the same.

`try_onnx_copy` converts the model with the training sample giving the input types (a DataFrame of one dtype
as one 2-D input, else one input per column, as skl2onnx does for DataFrames), runs the copy with ONNX Runtime
on the first rows of the sample and on up to 1,000 validation rows, and compares: labels must be equal,
probabilities (and a regressor's predictions) equal within `rtol` / `atol`, as `numpy.isclose` reads them.
It never raises for a model it cannot convert (an estimator skl2onnx has no converter for, a missing extra):
the outcome says why the copy was not kept, for the registry to record.

The kept copy carries one metadata entry, `loopml` (see `flavor_onnx`): the DataFrame columns in training
order when they are fed as one input, the classes, and whether the second output holds probabilities, so the
loaded copy has the `classes_` and `predict_proba` of the model it stands for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.registry.flavor_onnx import METADATA_KEY, OnnxClassifier, OnnxModel, serialize
from loopml.registry.flavor_sklearn import SklearnFlavor

__all__ = ["SAMPLE_ROWS", "VALIDATION_ROWS", "OnnxOutcome", "try_onnx_copy"]

SAMPLE_ROWS = 100
VALIDATION_ROWS = 1000


@dataclass(frozen=True)
class OnnxOutcome:
    """What `try_onnx_copy` found: whether the copy is kept, why, the largest difference and the copy's bytes."""

    kept: bool
    reason: str
    max_abs_diff: float | None
    onnx_bytes: bytes | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The outcome without the bytes, as plain values for a manifest."""
        return {
            "kept": self.kept,
            "reason": self.reason,
            "max_abs_diff": self.max_abs_diff,
            "seconds": round(self.seconds, 4),
        }


class _Refused(Exception):
    """Why the copy is not kept; caught in `try_onnx_copy` and turned into its outcome."""

    def __init__(self, reason: str, max_abs_diff: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.max_abs_diff = reason, max_abs_diff


def try_onnx_copy(
    model: Any,
    *,
    sample: Any,
    validation: Any = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> OnnxOutcome:
    """Convert scikit-learn `model` to ONNX and keep the copy only if it predicts as the model does.

    `sample` (a DataFrame or 2-D array, e.g. the training sample) gives the input types and its first
    `SAMPLE_ROWS` rows are compared; `validation`, when given, adds up to `VALIDATION_ROWS` rows spread over it.
    Conversion or comparison problems give `kept=False` with the reason; only bad arguments raise.
    """
    if rtol < 0 or atol < 0:
        raise InvalidInput(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    started = time.perf_counter()
    try:
        onnx_bytes, checked, max_abs_diff = _convert_and_compare(
            model, sample, validation, rtol=rtol, atol=atol
        )
    except _Refused as refusal:
        return OnnxOutcome(False, refusal.reason, refusal.max_abs_diff, None, time.perf_counter() - started)
    spread = "" if max_abs_diff is None else f"; max abs diff {max_abs_diff:.3g}"
    reason = f"matched {checked} rows within rtol={rtol:g}, atol={atol:g}{spread}"
    return OnnxOutcome(True, reason, max_abs_diff, onnx_bytes, time.perf_counter() - started)


def _convert_and_compare(
    model: Any, sample: Any, validation: Any, *, rtol: float, atol: float
) -> tuple[bytes, int, float | None]:
    if not SklearnFlavor().accepts(model):
        raise _Refused(
            f"a {type(model).__module__}.{type(model).__qualname__} is not a scikit-learn model; "
            "only those are converted with skl2onnx"
        )
    try:
        from skl2onnx import to_onnx  # type: ignore[import-untyped]
    except ImportError as error:
        raise _Refused(f"skl2onnx is not installed ({error}): pip install 'loopml[onnx]'") from None
    sets = [("sample", _head(sample, SAMPLE_ROWS))]
    if validation is not None:
        sets.append(("validation", _spread(validation, VALIDATION_ROWS)))
    if len(sets[0][1]) == 0:
        raise _Refused("the sample has no rows to convert and compare with")
    from sklearn.base import is_classifier

    classifier = bool(is_classifier(model))
    copy = _convert(model, sample, to_onnx, classifier=classifier)
    checked, diffs = 0, []
    for name, rows in sets:
        if len(rows) == 0:
            continue
        diff = _compare(model, copy, rows, name, classifier=classifier, rtol=rtol, atol=atol)
        if diff is not None:
            diffs.append(diff)
        checked += len(rows)
    return copy.model_bytes, checked, max(diffs) if diffs else None


def _convert(model: Any, sample: Any, to_onnx: Any, *, classifier: bool) -> OnnxModel:
    """The converted model, trying the input layouts that fit the sample; `_Refused` with the last error."""
    options = {"zipmap": False} if classifier else None  # probabilities as one 2-D tensor
    head = _head(sample, 1)
    layouts: list[tuple[Any, list[str] | None]] = []
    if hasattr(sample, "iloc"):
        if all(dtype.kind in "biuf" for dtype in sample.dtypes):
            # All numeric: one 2-D input (mixed int/float columns as float32, which the copy is fed as).
            same = len({str(dtype) for dtype in sample.dtypes}) == 1
            matrix = head.to_numpy() if same else head.to_numpy(dtype=np.float32)
            layouts.append((matrix, [str(c) for c in sample.columns]))
        layouts.append((head, None))  # skl2onnx makes one input per column, named after it
    else:
        layouts.append((np.asarray(head), None))
    failures = []
    for example, columns in layouts:
        try:
            proto = to_onnx(model, example, options=options)
        except Exception as error:  # skl2onnx raises many types (MissingShapeCalculator, RuntimeError, ...)
            failures.append(f"{type(error).__name__}: {_first_line(error)}")
            continue
        metadata = {
            "columns": columns,
            "classes": _plain(getattr(model, "classes_", None)),
            "probabilities": classifier and hasattr(model, "predict_proba"),
        }
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
        try:
            return OnnxModel.of(serialize(proto))
        except InvalidInput as error:
            failures.append(error.message)
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise _Refused(f"skl2onnx could not convert the {kind}: {failures[-1]}")


def _compare(
    model: Any, copy: OnnxModel, rows: Any, name: str, *, classifier: bool, rtol: float, atol: float
) -> float | None:
    """The largest difference of probabilities or values on `rows`; `_Refused` when any row differs."""
    try:
        expected = np.asarray(model.predict(rows))
    except Exception as error:  # the model's own predict failing on its own sample: nothing to compare with
        raise _Refused(
            f"the model cannot predict the {name} rows: {type(error).__name__}: {_first_line(error)}"
        ) from None
    try:
        got = np.asarray(copy.predict(rows))
        probabilities = copy.predict_proba(rows) if classifier and isinstance(copy, OnnxClassifier) else None
    except Exception as error:  # ONNX Runtime's own errors, or InvalidInput for data it cannot take
        raise _Refused(
            f"ONNX Runtime failed on the {name} rows: {type(error).__name__}: {_first_line(error)}"
        ) from None
    if classifier:
        differing = _label_mismatches(expected, got)
        if differing:
            raise _Refused(
                f"the ONNX copy predicts other labels for {differing} of {len(expected)} {name} rows"
            )
        if not hasattr(model, "predict_proba"):
            return None
        expected, what = np.asarray(model.predict_proba(rows), dtype=np.float64), "probabilities"
        got = np.asarray(probabilities, dtype=np.float64)
    else:
        expected, got, what = expected.astype(np.float64), got.astype(np.float64), "predictions"
    if got.shape != expected.shape:
        raise _Refused(f"the ONNX copy's {what} have shape {got.shape}, the model's {expected.shape}")
    diff = float(np.nanmax(np.abs(got - expected), initial=0.0))
    close = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        rows_off = int((~close).reshape(len(close), -1).any(axis=1).sum())
        raise _Refused(
            f"the ONNX copy's {what} differ beyond rtol={rtol:g}, atol={atol:g} for {rows_off} of "
            f"{len(close)} {name} rows (max abs diff {diff:.3g})",
            diff,
        )
    return diff


def _label_mismatches(expected: np.ndarray, got: np.ndarray) -> int:
    if got.shape != expected.shape:
        return len(expected)
    try:
        same = got.astype(expected.dtype) == expected
    except (TypeError, ValueError):
        same = got.astype(str) == expected.astype(str)
    return int(np.size(same) - np.count_nonzero(same))


def _head(data: Any, rows: int) -> Any:
    return data.iloc[:rows] if hasattr(data, "iloc") else np.asarray(data)[:rows]


def _spread(data: Any, rows: int) -> Any:
    """Up to `rows` rows evenly spread over `data`, first and last included (all when it has fewer)."""
    if len(data) <= rows:
        return data
    index = np.unique(np.linspace(0, len(data) - 1, rows).round().astype(np.int64))
    return data.iloc[index] if hasattr(data, "iloc") else np.asarray(data)[index]


def _plain(classes: Any) -> list[Any] | None:
    if classes is None:
        return None
    values = np.asarray(classes).tolist()
    try:
        json.dumps(values)
    except (TypeError, ValueError):
        return None
    return list(values)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
