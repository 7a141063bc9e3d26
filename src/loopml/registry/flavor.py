"""Model flavors: how one kind of model is saved into a package folder, loaded back and hashed by its content.

A flavor is one module holding one `Flavor` subclass (`flavor_sklearn`, `flavor_onnx`, `flavor_lightgbm`,
`flavor_xgboost`, `flavor_python`, `flavor_mlflow`). This module holds the contract and the table of built-in
flavors, which are imported by name when first asked for: a flavor module imports this one for the contract, so
this one never imports a flavor module at its top, and a flavor's library (scikit-learn, onnxruntime) is
imported only when a model of that flavor is saved or loaded. Adding a flavor is one module and one line in
`_BUILT_INS`. `flavor_wrappers` holds what the lightgbm and xgboost flavors share (their `wrapper.json`).

No flavor saves with pickle: loading a pickle runs whatever code its bytes name. Each flavor stores a model in its
library's own format (skops for scikit-learn, protobuf for ONNX, LightGBM's text and XGBoost's JSON formats,
JSON for a generic Python model) and records the versions of the
libraries it was saved with, so a package loaded elsewhere can warn about a mismatch.
"""

from __future__ import annotations

import abc
import functools
import importlib
import importlib.metadata
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from loopml.core.errors import InvalidInput, NotFound

__all__ = ["Flavor", "flavor_for", "flavor_named", "flavor_names", "installed_version", "json_params"]

# name -> "module:class", in the order `flavor_for` tries them: specific libraries before the generic Python
# flavor, which would take any object with `predict` and `get_params` (a LightGBM model has both).
_BUILT_INS = {
    "sklearn": "loopml.registry.flavor_sklearn:SklearnFlavor",
    "onnx": "loopml.registry.flavor_onnx:OnnxFlavor",
    "lightgbm": "loopml.registry.flavor_lightgbm:LightGBMFlavor",
    "xgboost": "loopml.registry.flavor_xgboost:XGBoostFlavor",
    "python": "loopml.registry.flavor_python:PythonFlavor",
    "mlflow": "loopml.registry.flavor_mlflow:MlflowFlavor",  # accepts no object: stores MLflow's folders
}


class Flavor(abc.ABC):
    """Saves one kind of model as files in a folder and loads it back, never with pickle.

    A flavor is stateless: one instance serves every model of its kind. Its `name` is recorded in the model
    package, so a flavor's name never changes once packages have been written with it.
    """

    name: ClassVar[str]
    # Libraries whose version change may change predictions; None: every library `libraries` records.
    checked_libraries: ClassVar[frozenset[str] | None] = None
    # True when loading imports and runs the model's own code, so `load` needs `trusted=True`.
    runs_code: ClassVar[bool] = False

    @abc.abstractmethod
    def accepts(self, model: Any) -> bool:
        """True when this flavor can save `model` (cheap: looks at the type, imports nothing)."""

    @abc.abstractmethod
    def save(self, model: Any, folder: Path) -> list[str]:
        """Write the files of `model` into `folder` (created if missing); their names relative to it."""

    @abc.abstractmethod
    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """The model that `save` wrote into `folder`.

        `trusted` matters only to flavors whose loading runs the model's own code; the others ignore it.
        """

    @abc.abstractmethod
    def content_hash(self, model: Any) -> str:
        """Canonical digest of `model`: equal models give equal digests, in any process."""

    @abc.abstractmethod
    def libraries(self, model: Any = None) -> dict[str, str]:
        """Distribution name -> version of the libraries a saved model needs, as installed now.

        `model`, when given, lets a flavor add the distribution that provides the model's own code.
        """

    def check_libraries(self, saved: Mapping[str, str]) -> list[str]:
        """One warning per checked library whose installed version differs from `saved` (both named)."""
        warnings = []
        for library in sorted(saved):
            if self.checked_libraries is not None and library not in self.checked_libraries:
                continue
            was, now = saved[library], installed_version(library)
            if now is None:
                warnings.append(
                    f"the model was saved with {library} {was}, which is not installed: "
                    f"pip install '{library}=={was}'"
                )
            elif now != was:
                warnings.append(
                    f"the model was saved with {library} {was} but {library} {now} is installed, so its "
                    f"predictions may differ: install {library}=={was}, or re-train and register it again"
                )
        return warnings

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution` (as pip names it, e.g. "scikit-learn"); None when absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def json_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The params that JSON writes and reads back unchanged, and the sorted names of the others.

    A tuple (read back as a list), a dict with non-str keys, a numpy integer, a callable or a random state is
    not kept; NaN is (Python's json reads it back), as a model's `missing=nan` changes its predictions.
    """
    kept, dropped = {}, []
    for name, value in params.items():
        try:
            text = json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            dropped.append(name)
            continue
        if _same(value, json.loads(text)):
            kept[name] = value
        else:
            dropped.append(name)
    return kept, sorted(dropped)


def _same(value: Any, read: Any) -> bool:
    if isinstance(value, float):
        return type(read) is float and (value == read or (math.isnan(value) and math.isnan(read)))
    if type(value) is not type(read):
        return False
    if isinstance(value, dict):
        return value.keys() == read.keys() and all(_same(value[k], read[k]) for k in value)
    if isinstance(value, list):
        return len(value) == len(read) and all(_same(v, r) for v, r in zip(value, read, strict=True))
    return bool(value == read)


def flavor_names() -> list[str]:
    """The names of the built-in flavors, in the order `flavor_for` tries them."""
    return list(_BUILT_INS)


def flavor_named(name: str) -> Flavor:
    """The flavor recorded as `name` in a model package; `NotFound` when this LoopML has none by that name."""
    if name not in _BUILT_INS:
        raise NotFound(
            f"no model flavor named {name!r} in this LoopML (flavors: {', '.join(_BUILT_INS)}); "
            "the model package may come from a newer LoopML: upgrade loopml to load it"
        )
    return _instance(name)


def flavor_for(model: Any) -> Flavor:
    """The first flavor that accepts `model`; `InvalidInput` naming its type and the flavors otherwise."""
    for name in _BUILT_INS:
        flavor = _instance(name)
        if flavor.accepts(model):
            return flavor
    raise InvalidInput(_refusal(model))


@functools.cache
def _instance(name: str) -> Flavor:
    module, _, attribute = _BUILT_INS[name].partition(":")
    flavor: Flavor = getattr(importlib.import_module(module), attribute)()
    return flavor


_PYTHON_FLAVOR_CONTRACT = (
    "to register it as a python-flavor model, define its class at the top level of an importable module "
    "with predict(X) (and optionally predict_proba(X)) and get_params() returning its constructor arguments "
    "as JSON values (or to_dict() with a from_dict() classmethod)"
)


def _refusal(model: Any) -> str:
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if isinstance(model, type):
        return f"got the class {model.__module__}.{model.__qualname__}, not a model: pass a fitted instance of it"
    if isinstance(model, bytes | bytearray) and bytes(model[:1]) == b"\x80":
        return (
            "these bytes look like a pickle: LoopML never loads pickles, as loading one runs any code it names; "
            "if you trust it, unpickle it yourself and register the model object"
        )
    flavors = ", ".join(_BUILT_INS)
    if callable(getattr(model, "predict", None)):
        return (
            f"no model flavor accepts a {kind} (flavors: {flavors}): it has predict() but no get_params() or "
            "to_dict(), so only pickle could save it, and LoopML never pickles models (loading a pickle runs "
            f"arbitrary code); {_PYTHON_FLAVOR_CONTRACT}"
        )
    return (
        f"no model flavor accepts a {kind} (flavors: {flavors}); LoopML never pickles models (loading a "
        f"pickle runs arbitrary code), so a model is a scikit-learn estimator or a python-flavor model: "
        f"{_PYTHON_FLAVOR_CONTRACT}"
    )
