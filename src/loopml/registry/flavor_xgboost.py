"""The `xgboost` flavor: XGBoost Boosters and their scikit-learn wrappers, in XGBoost's own JSON format.

A package holds `model.json`, written by `save_model` (XGBoost's JSON format, read back by XGBoost's own
parser, never pickle), and `wrapper.json`: which class was saved and its constructor params. Loading builds
that class again (`XGBClassifier(**params)`, `XGBRegressor(**params)` or a bare `Booster`) and calls
`load_model`, which restores the trees, the objective, the classes and the categorical feature types; the
params restore what the JSON does not hold but predictions use, such as `missing`. A param JSON cannot hold
(a callback, a random state) is left at its default and named in `wrapper.json`.

The content hash covers a canonical form of the model JSON (parsed and dumped with sorted keys, without the
writer's version and the wrapper's own attribute), the class and the params that `load_model` does not set
from the model, so a loaded model hashes as the one it was saved from.

XGBoost is published as `xgboost` and, without the CUDA libraries, as `xgboost-cpu`: both provide the same
module, so a model saved with one loads with the other without a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_text
from loopml.registry.flavor import Flavor, installed_version, json_params
from loopml.registry.flavor_wrappers import WRAPPER_FILE, NativeFormat, installed_versions

__all__ = ["XGBoostFlavor"]

MODEL_FILE = "model.json"
FORMAT = "loopml.xgboost_model"
FORMAT_VERSION = 1
_BOOSTER, _CLASSIFIER, _REGRESSOR = "Booster", "XGBClassifier", "XGBRegressor"
_NATIVE = NativeFormat(
    "xgboost", "XGBoost", MODEL_FILE, FORMAT, FORMAT_VERSION, (_BOOSTER, _CLASSIFIER, _REGRESSOR)
)
_DISTRIBUTIONS = ("xgboost", "xgboost-cpu")
# Params that XGBClassifier.load_model sets from the model itself: the model JSON's hash covers them.
_SET_BY_LOAD = frozenset({"objective", "booster", "base_score", "feature_types", "enable_categorical"})
_SKLEARN_ATTRIBUTE = "scikit_learn"


class XGBoostFlavor(Flavor):
    """`xgboost.Booster`, `XGBClassifier` and `XGBRegressor` as `model.json` (XGBoost's JSON) + `wrapper.json`."""

    name = "xgboost"
    checked_libraries = frozenset(_DISTRIBUTIONS)

    def accepts(self, model: Any) -> bool:
        """True for a Booster, an XGBClassifier or an XGBRegressor (not a subclass)."""
        return _NATIVE.accepts(model)

    def save(self, model: Any, folder: Path) -> list[str]:
        """Write `model.json` with XGBoost's `save_model`, and `wrapper.json`."""
        document = _document(model)
        folder.mkdir(parents=True, exist_ok=True)
        _booster(model)  # refuses an unfitted wrapper before anything is written
        model.save_model(str(folder / MODEL_FILE))
        (folder / WRAPPER_FILE).write_text(
            json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return [MODEL_FILE, WRAPPER_FILE]

    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """The saved class built again and its `load_model` called on `model.json` (`trusted` is ignored)."""
        document = _NATIVE.read(folder)
        xgboost = _NATIVE.import_library()
        kind = document["class"]
        try:
            model = xgboost.Booster() if kind == _BOOSTER else getattr(xgboost, kind)(**document["params"])
        except TypeError as error:  # a param this XGBoost no longer takes
            raise InvalidInput(
                f"{kind}(**params) failed on the params saved in {folder / WRAPPER_FILE}: {error}; install the "
                "XGBoost version the model was saved with"
            ) from None
        try:
            model.load_model(str(folder / MODEL_FILE))
        except xgboost.core.XGBoostError as error:
            raise InvalidInput(f"XGBoost cannot read {folder / MODEL_FILE}: {error}") from None
        return model

    def content_hash(self, model: Any) -> str:
        """Digest of the canonical model JSON, the class and the params the model JSON does not hold."""
        document = _document(model)
        params = {k: v for k, v in document["params"].items() if k not in _SET_BY_LOAD}
        canonical = {"class": document["class"], "params": params, "model": _canonical_model(model)}
        return hash_text(json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False))

    def libraries(self, model: Any = None) -> dict[str, str]:
        """The installed XGBoost (as `xgboost` or `xgboost-cpu`) and numpy versions (`model` adds nothing)."""
        return installed_versions((*_DISTRIBUTIONS, "numpy"))

    def check_libraries(self, saved: Mapping[str, str]) -> list[str]:
        """As `Flavor.check_libraries`, taking `xgboost` and `xgboost-cpu` as one library."""
        installed = next((name for name in _DISTRIBUTIONS if installed_version(name) is not None), None)
        if installed is None:
            return super().check_libraries(saved)
        return super().check_libraries(
            {(installed if name in _DISTRIBUTIONS else name): version for name, version in saved.items()}
        )


def _document(model: Any) -> dict[str, Any]:
    kind = type(model).__name__
    params, dropped = ({}, []) if kind == _BOOSTER else json_params(model.get_params(deep=False))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": kind,
        "params": params,
        "params_not_saved": dropped,
    }


def _booster(model: Any) -> Any:
    if type(model).__name__ == _BOOSTER:
        return model
    try:
        return model.get_booster()
    except Exception as error:  # sklearn's NotFittedError, whose import needs scikit-learn
        raise InvalidInput(
            f"the {type(model).__name__} is not fitted: fit it before registering it"
        ) from error


def _canonical_model(model: Any) -> Any:
    document = json.loads(bytes(_booster(model).save_raw(raw_format="json")))
    document.pop("version", None)
    attributes = document.get("learner", {}).get("attributes", {})
    attributes.pop(_SKLEARN_ATTRIBUTE, None)
    return document
