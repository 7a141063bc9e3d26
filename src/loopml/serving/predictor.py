"""One loaded model version as serving runs it: validate a frame against the signature, then predict.

A `Predictor` wraps whatever `load_version(serving=True)` returned (the verified ONNX copy, a scikit-learn
estimator, a LightGBM/XGBoost wrapper, a python-flavor model) behind one call that returns named output
columns: `prediction`, and `proba_<class>` per class when the model gives probabilities. An ONNX classifier
computes labels and probabilities in one run; a native model is asked for probabilities only when the caller
wants them, since `predict_proba` of a forest costs as much again as `predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.registry.flavor_onnx import OnnxClassifier, OnnxModel
from loopml.registry.signature import Signature
from loopml.registry.signature_check import validate

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "prediction"


@dataclass(frozen=True)
class ValidationPolicy:
    """What a request may hold beyond what training saw. `unseen_levels` and `out_of_range`: "pass" (the
    model sees them; monitoring reports the drift) or "reject" (a 400 listing each one). `nulls`: "signature"
    (nulls only in columns where training saw some) or "pass" (any column may be null, for models that
    handle missing values themselves, such as gradient-boosted trees)."""

    unseen_levels: str = "pass"
    out_of_range: str = "pass"
    nulls: str = "signature"

    def __post_init__(self) -> None:
        if self.nulls not in ("signature", "pass"):
            raise InvalidInput(f"nulls must be 'signature' or 'pass', got {self.nulls!r}")
        for name in ("unseen_levels", "out_of_range"):
            if getattr(self, name) not in ("pass", "reject"):
                raise InvalidInput(f"{name} must be 'pass' or 'reject', got {getattr(self, name)!r}")


@dataclass
class Predictor:
    """A model version ready to answer: `validate` a frame, then `predict` it."""

    model: Any
    signature: Signature | None
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)

    @cached_property
    def _checked(self) -> Signature:
        """The signature requests are checked against: with `nulls="pass"`, every input is nullable."""
        assert self.signature is not None
        if self.policy.nulls == "signature":
            return self.signature
        return replace(self.signature, inputs=tuple(replace(c, nullable=True) for c in self.signature.inputs))

    @property
    def runtime(self) -> str:
        """ "onnxruntime" for the verified ONNX copy, else "native"."""
        return "onnxruntime" if isinstance(self.model, OnnxModel) else "native"

    @property
    def classes(self) -> list[Any] | None:
        """The class labels, in the order of the probability columns (None for a regressor)."""
        classes = getattr(self.model, "classes_", None)
        return None if classes is None else [_plain(c) for c in np.asarray(classes).tolist()]

    @property
    def has_probabilities(self) -> bool:
        """True when the model gives class probabilities."""
        return hasattr(self.model, "predict_proba")

    def output_names(self, probabilities: bool = True) -> list[str]:
        """The columns `predict` returns."""
        names = [PREDICTION]
        if probabilities and self.has_probabilities:
            names += [f"proba_{c}" for c in self.classes or []]
        return names

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` checked against the signature (`SignatureMismatch` lists every problem), in model order."""
        if self.signature is None:
            return frame
        return validate(
            self._checked,
            frame,
            strict_levels=self.policy.unseen_levels == "reject",
            strict_ranges=self.policy.out_of_range == "reject",
        )

    def predict(self, frame: pd.DataFrame, *, probabilities: bool = True) -> dict[str, np.ndarray]:
        """Named output columns for the rows of `frame` (already validated), one value per row each."""
        rows = len(frame)
        if rows == 0:
            return {name: np.empty(0) for name in self.output_names(probabilities)}
        proba: np.ndarray | None = None
        if isinstance(self.model, OnnxClassifier):
            labels, proba = _onnx_outputs(self.model, frame, probabilities)
        else:
            labels = np.asarray(self.model.predict(frame))
            if probabilities and self.has_probabilities:
                proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        if labels.shape[:1] != (rows,):
            raise InvalidInput(f"the model returned {labels.shape} predictions for {rows} rows")
        outputs = {PREDICTION: labels}
        if proba is not None:
            names = self.output_names(True)[1:] or [f"proba_{i}" for i in range(proba.shape[1])]
            outputs.update({name: proba[:, i] for i, name in enumerate(names)})
        return outputs


def _onnx_outputs(model: OnnxClassifier, frame: Any, probabilities: bool) -> tuple[np.ndarray, Any]:
    """Labels and (when asked) probabilities from one ONNX Runtime run."""
    results = model.run(frame)
    labels = np.asarray(results[0])
    if not probabilities:
        return labels, None
    raw = results[1]
    if isinstance(raw, list):  # skl2onnx's ZipMap: one {class: probability} per row
        keys = list(getattr(model, "classes_", raw[0].keys() if raw else ()))
        return labels, np.array([[row[key] for key in keys] for row in raw], dtype=np.float64)
    return labels, np.asarray(raw, dtype=np.float64)


def column_list(values: Any) -> list[Any]:
    """One output column as a JSON list (NaN as null, numpy scalars as Python ones)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        # JSON has no NaN: a missing number is null.
        return [
            None if missing else v
            for v, missing in zip(array.tolist(), np.isnan(array).tolist(), strict=True)
        ]
    return [_plain(v) for v in array.tolist()]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
