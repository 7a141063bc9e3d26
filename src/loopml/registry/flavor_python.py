"""The `python` flavor: a model of one's own class, saved as its import path and constructor params in JSON.

The contract a class follows to be registered this way:

- it is defined at the top level of a module that can be imported (not `__main__`, not inside a function);
- it has `predict(X)`, and optionally `predict_proba(X)`;
- it says how to build it again: `get_params()` returning its constructor arguments, so that
  `cls(**params)` gives the same model, or `to_dict()` returning data that `cls.from_dict(data)` (or
  `cls(**data)` when there is no `from_dict`) turns back into the same model;
- those params are JSON values (str, int, float, bool, None, lists, dicts with str keys).

The package holds one file, `python_model.json`; the class's code is not copied, it is imported when the model
is loaded. That runs code, so `load` refuses unless called with `trusted=True`. Saving builds the model again
from the JSON it writes and refuses when the copy differs (a fitted attribute its params do not carry, a tuple
that JSON turns into a list), so a package never holds a model that loads as another one.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import hash_file
from loopml.registry.flavor import Flavor, installed_version
from loopml.registry.model_hash import NotCanonical, canonical_hash
from loopml.registry.skops_io import UntrustedArtifact

_log = logging.getLogger(__name__)

MODEL_FILE = "python_model.json"
FORMAT_VERSION = 1
_FROM_DICT, _INIT = "from_dict", "init"


class PythonFlavor(Flavor):
    """Models of one's own class, rebuilt from their import path and JSON params; loading is trusted code."""

    name = "python"
    runs_code = True

    def accepts(self, model: Any) -> bool:
        """True for an instance with `predict` and `get_params` or `to_dict`, whose class is not scikit-learn's."""
        return (
            not isinstance(model, type)
            and not type(model).__module__.startswith("sklearn.")
            and callable(getattr(model, "predict", None))
            and (callable(getattr(model, "to_dict", None)) or callable(getattr(model, "get_params", None)))
        )

    def save(self, model: Any, folder: Path) -> list[str]:
        """Write `python_model.json`, after checking the class imports back and the params rebuild the model."""
        cls = type(model)
        path = _import_path(cls)
        if _resolve(path) is not cls:
            raise InvalidInput(
                f"importing {path} gives another class than the model's (the module was reloaded or the class "
                "redefined): re-create the model from the current class"
            )
        build, params = _describe(model)
        document = {
            "format": "loopml.python_model",
            "format_version": FORMAT_VERSION,
            "class": path,
            "build": build,
            "params": params,
            "source_hash": _source_hash(cls),
        }
        try:
            text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                f"the params of {path} must be JSON values (str, int, float, bool, None, lists, dicts with str "
                f"keys): {error}"
            ) from None
        _check_rebuilds(model, _build(cls, path, build, json.loads(text)["params"]), path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(text + "\n", encoding="utf-8")
        return [MODEL_FILE]

    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """The model, built by importing its class; `UntrustedArtifact` unless `trusted=True`."""
        document = _read(folder)
        path = document["class"]
        if not trusted:
            module = path.partition(":")[0]
            raise UntrustedArtifact(
                f"this python-flavor model is an instance of {path}: loading it imports {module} and runs its "
                "code, so LoopML loads it only when asked to: pass trusted=True if you trust that code",
                types=[path],
            )
        cls = _resolve(path)
        if document.get("source_hash") not in (None, _source_hash(cls)):
            _log.warning(
                "the source of %s changed since the model was saved; its predictions may differ", path
            )
        return _build(cls, path, document["build"], document["params"])

    def content_hash(self, model: Any) -> str:
        """Digest of the import path, the params and the class's source file (code it imports is not in it)."""
        cls = type(model)
        build, params = _describe(model)
        try:
            return canonical_hash([_import_path(cls), build, params, _source_hash(cls)])
        except NotCanonical as error:
            raise InvalidInput(f"the params of {_import_path(cls)} are not plain values: {error}") from None

    def libraries(self, model: Any = None) -> dict[str, str]:
        """The installed distribution that provides the model's module, if it comes from one."""
        if model is None:
            return {}
        top = type(model).__module__.partition(".")[0]
        # An editable install is missing from the map: try the module's own name as the distribution's.
        found = {name: installed_version(name) for name in _distributions().get(top) or [top]}
        return {name: version for name, version in found.items() if version is not None}


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    # Scans every installed distribution (tens of ms): once per process, and only for this flavor.
    return importlib.metadata.packages_distributions()


def _import_path(cls: type) -> str:
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__":
        raise InvalidInput(
            f"the class {qualname} is defined in __main__ (a script or notebook), so another process cannot "
            "import it: move it into a module"
        )
    if "<locals>" in qualname:
        raise InvalidInput(
            f"the class {module}.{qualname} is defined inside a function, so it cannot be imported: "
            "define it at the top level of its module"
        )
    return f"{module}:{qualname}"


def _resolve(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise NotFound(
            f"cannot import {module_name}, the module of the model class {path} ({error}): install the "
            "package that provides it or put it on sys.path"
        ) from None
    except Exception as error:  # the module's own code failed: whatever it raised, the model cannot load
        raise InvalidInput(f"importing {module_name} failed: {type(error).__name__}: {error}") from error
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise NotFound(f"module {module_name} has no class {qualname}: was it renamed or moved?")
    if not isinstance(found, type) or not callable(getattr(found, "predict", None)):
        raise InvalidInput(f"{path} is not a model class (a class with predict): the package is damaged")
    return found


def _describe(model: Any) -> tuple[str, Any]:
    """How to build the model again, and the data to build it from."""
    if callable(getattr(model, "to_dict", None)):
        return (_FROM_DICT if callable(getattr(type(model), "from_dict", None)) else _INIT), model.to_dict()
    get_params = model.get_params
    # scikit-learn style get_params(deep=True) adds nested "step__param" keys that the constructor refuses.
    takes_deep = "deep" in inspect.signature(get_params).parameters
    return _INIT, get_params(deep=False) if takes_deep else get_params()


def _build(cls: type, path: str, build: str, params: Any) -> Any:
    if build == _INIT and not isinstance(params, dict):
        raise InvalidInput(
            f"{path} is built as {path}(**params), so its params must be a dict, got {params!r}"
        )
    try:
        return cls.from_dict(params) if build == _FROM_DICT else cls(**params)  # type: ignore[attr-defined]
    except Exception as error:  # the class's own code: a changed signature raises TypeError, others anything
        how = f"{path}.from_dict(data)" if build == _FROM_DICT else f"{path}(**params)"
        raise InvalidInput(f"{how} failed on the saved params: {type(error).__name__}: {error}") from error


def _check_rebuilds(model: Any, rebuilt: Any, path: str) -> None:
    before, after = _attributes(model), _attributes(rebuilt)
    try:
        same = canonical_hash(before) == canonical_hash(after)
    except NotCanonical:  # an attribute the walk cannot describe (a lock, a session): compare names at least
        same = before.keys() == after.keys()
    if not same:
        differing = sorted(
            name
            for name in before.keys() | after.keys()
            if name not in before or name not in after or _differs(before[name], after[name])
        )
        raise InvalidInput(
            f"{path} built again from its saved params differs from the model (in {', '.join(differing)}), so it "
            "would load as another model: make get_params() (or to_dict()) return everything the model "
            "needs, as JSON values (a tuple comes back as a list)"
        )


def _differs(first: Any, second: Any) -> bool:
    try:
        return canonical_hash(first) != canonical_hash(second)
    except NotCanonical:
        return False


def _attributes(model: Any) -> dict[str, Any]:
    return dict(getattr(model, "__dict__", {}))


def _source_hash(cls: type) -> str | None:
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:  # a builtin or extension class has no Python source
        return None
    return hash_file(Path(source)) if source is not None and Path(source).is_file() else None


def _read(folder: Path) -> dict[str, Any]:
    path = folder / MODEL_FILE
    if not path.is_file():
        raise NotFound(f"the model package at {folder} has no {MODEL_FILE}: it is incomplete or not python")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != "loopml.python_model":
        raise InvalidInput(f"{path} is not a LoopML python-model file")
    version = document.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise InvalidInput(
            f"{path} has format version {version!r}, newer than this LoopML reads ({FORMAT_VERSION}): "
            "upgrade loopml to load it"
        )
    if not isinstance(document.get("class"), str) or ":" not in document["class"]:
        raise InvalidInput(f"{path} names no class as 'module:qualname'")
    if document.get("build") not in (_FROM_DICT, _INIT) or "params" not in document:
        raise InvalidInput(f"{path} says neither how to build the model nor from which params")
    return document
