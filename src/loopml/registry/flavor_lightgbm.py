"""The `lightgbm` flavor: LightGBM Boosters and their scikit-learn wrappers, in LightGBM's own text format.

A package holds `model.txt`, written by `Booster.save_model` (LightGBM's text format: trees, parameters and the
pandas categories, read back by LightGBM's own parser, never pickle), and `wrapper.json`: which class was saved,
its classes and its constructor params.

A `Booster` loads as a `lightgbm.Booster`. `LGBMClassifier` and `LGBMRegressor` load as `BoosterClassifier` and
`BoosterRegressor`: a Booster read from the text file with the `predict` / `predict_proba` / `classes_` of the
wrapper, computing the same numbers (`predict_proba` stacks `1 - p, p` for binary models, `predict` takes the
class of the highest probability). The scikit-learn wrapper itself is not rebuilt: that would mean setting a
dozen private attributes that change between LightGBM releases (`_Booster`, `_le`, `_n_classes`, `_objective`,
...). The params are kept for `get_params`, not used to predict. A wrapper trained with a custom objective
function is refused: its outputs are raw scores computed with code that a text file cannot hold.

The content hash covers the model text (it has no timestamp or other volatile line) and `wrapper.json`, so a
loaded `BoosterClassifier` hashes as the `LGBMClassifier` it was saved from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_text
from loopml.registry.flavor import Flavor, json_params
from loopml.registry.flavor_wrappers import WRAPPER_FILE, NativeFormat, installed_versions

__all__ = ["BoosterClassifier", "BoosterRegressor", "LightGBMFlavor"]

MODEL_FILE = "model.txt"
FORMAT = "loopml.lightgbm_model"
FORMAT_VERSION = 1
_BOOSTER, _CLASSIFIER, _REGRESSOR = "Booster", "LGBMClassifier", "LGBMRegressor"
_NATIVE = NativeFormat(
    "lightgbm", "LightGBM", MODEL_FILE, FORMAT, FORMAT_VERSION, (_BOOSTER, _CLASSIFIER, _REGRESSOR)
)
# dtype kinds that classes are rebuilt with: bool, ints, floats, str, and object arrays of those.
_CLASS_KINDS = frozenset("biufUO")


class BoosterRegressor:
    """What `LGBMRegressor.predict` computes, from a Booster read from LightGBM's text format."""

    def __init__(self, booster: Any, *, params: dict[str, Any]) -> None:
        self.booster_ = booster
        self.params = params

    def predict(self, data: Any) -> Any:
        """The Booster's predictions for `data` (a DataFrame or a 2-D array)."""
        return self.booster_.predict(data)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The wrapper's constructor params as saved (those JSON could hold)."""
        return dict(self.params)

    @property
    def n_features_in_(self) -> int:
        """The number of features the model was trained on."""
        return int(self.booster_.num_feature())

    @property
    def feature_name_(self) -> list[str]:
        """The feature names LightGBM recorded (`Column_0`, ... when trained on an array)."""
        return list(self.booster_.feature_name())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.booster_.num_trees()} trees>"


class BoosterClassifier(BoosterRegressor):
    """What `LGBMClassifier.predict` / `predict_proba` compute, from a Booster read from LightGBM's text."""

    def __init__(self, booster: Any, *, params: dict[str, Any], classes: np.ndarray) -> None:
        super().__init__(booster, params=params)
        self.classes_ = classes

    @property
    def n_classes_(self) -> int:
        """The number of classes."""
        return len(self.classes_)

    def predict_proba(self, data: Any) -> np.ndarray:
        """One row of probabilities per row of `data`, a column per class in `classes_` order."""
        result = np.asarray(self.booster_.predict(data))
        if result.ndim == 1:  # binary: LightGBM gives the positive class's probability
            return np.vstack((1.0 - result, result)).transpose()
        return result

    def predict(self, data: Any) -> Any:
        """The class of the highest probability for each row of `data`."""
        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]


class LightGBMFlavor(Flavor):
    """`lightgbm.Booster`, `LGBMClassifier` and `LGBMRegressor` as `model.txt` (LightGBM's text) + `wrapper.json`."""

    name = "lightgbm"
    checked_libraries = frozenset({"lightgbm"})

    def accepts(self, model: Any) -> bool:
        """True for a Booster, an LGBMClassifier or LGBMRegressor (not a subclass), or a loaded wrapper."""
        if type(model) in (BoosterClassifier, BoosterRegressor):
            return True
        return _NATIVE.accepts(model)

    def save(self, model: Any, folder: Path) -> list[str]:
        """Write `model.txt` and `wrapper.json`; `InvalidInput` for an unfitted model or a custom objective."""
        document, text = _describe(model)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(text, encoding="utf-8")
        (folder / WRAPPER_FILE).write_text(_dumps(document) + "\n", encoding="utf-8")
        return [MODEL_FILE, WRAPPER_FILE]

    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """A `lightgbm.Booster`, or a `BoosterClassifier` / `BoosterRegressor` (`trusted` is ignored)."""
        document = _NATIVE.read(folder)
        lightgbm = _NATIVE.import_library()
        try:
            booster = lightgbm.Booster(model_file=str(folder / MODEL_FILE))
        except lightgbm.basic.LightGBMError as error:
            raise InvalidInput(f"LightGBM cannot read {folder / MODEL_FILE}: {error}") from None
        kind = document["class"]
        if kind == _BOOSTER:
            return booster
        params = document["params"]
        if kind == _REGRESSOR:
            return BoosterRegressor(booster, params=params)
        return BoosterClassifier(booster, params=params, classes=_classes_from(document))

    def content_hash(self, model: Any) -> str:
        """Digest of `wrapper.json` and the model text."""
        document, text = _describe(model)
        return hash_text(_dumps(document) + "\n" + text)

    def libraries(self, model: Any = None) -> dict[str, str]:
        """Installed versions of lightgbm and numpy (`model` adds nothing)."""
        return installed_versions(("lightgbm", "numpy"))


def _describe(model: Any) -> tuple[dict[str, Any], str]:
    """The wrapper document and the model text of a model this flavor accepts."""
    if isinstance(model, BoosterRegressor):
        kind = _CLASSIFIER if isinstance(model, BoosterClassifier) else _REGRESSOR
        booster, params, classes = model.booster_, model.params, getattr(model, "classes_", None)
    elif type(model).__name__ == _BOOSTER:
        kind, booster, params, classes = _BOOSTER, model, {}, None
    else:
        kind = type(model).__name__
        if not model.__sklearn_is_fitted__():
            raise InvalidInput(f"the {kind} is not fitted: fit it before registering it")
        if callable(model.objective_):
            raise InvalidInput(
                f"the {kind} was trained with a custom objective function, so its outputs are raw scores "
                "computed with code that LightGBM's text format cannot hold: register model.booster_ instead"
            )
        booster, classes = model.booster_, getattr(model, "classes_", None)
        params, _ = json_params(model.get_params(deep=False))
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": kind,
        "params": params,
        "classes": None if classes is None else np.asarray(classes).tolist(),
        "classes_dtype": None if classes is None else np.asarray(classes).dtype.str,
    }
    if classes is not None and np.asarray(classes).dtype.kind not in _CLASS_KINDS:
        raise InvalidInput(
            f"the classes of the {kind} are of dtype {np.asarray(classes).dtype}; LoopML saves classes that "
            "are bools, numbers or strings"
        )
    return document, str(booster.model_to_string())


def _dumps(document: dict[str, Any]) -> str:
    try:
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as error:  # classes of an object dtype holding other values
        raise InvalidInput(f"the classes of the LightGBM model are not JSON values: {error}") from None


def _classes_from(document: dict[str, Any]) -> np.ndarray:
    values, dtype = document.get("classes"), document.get("classes_dtype")
    if not isinstance(values, list) or not isinstance(dtype, str):
        raise InvalidInput("the wrapper file of this LightGBM classifier lists no classes")
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise InvalidInput(f"the wrapper file names the unknown dtype {dtype!r} for its classes") from None
    if kind.kind not in _CLASS_KINDS:
        raise InvalidInput(
            f"the wrapper file names the dtype {dtype!r} for its classes, not one LoopML reads"
        )
    return np.asarray(values, dtype=kind)
