"""The `mlflow` flavor: a model that MLflow's client logged (its `MLmodel` folder as MLflow wrote it).

LoopML never saves a model in this flavor; it stores what `mlflow.<flavor>.log_model` uploaded through the
MLflow API, so `mlflow.pyfunc.load_model("models:/name@alias")` gets back exactly those files. LoopML itself
loads the scikit-learn flavor of such a folder:

- `serialization_format: skops` (MLflow 3's default outside Databricks): read through LoopML's skops allow-list,
  like a LoopML sklearn package, with no trust needed;
- `pickle` / `cloudpickle`: unpickling runs whatever code the bytes name, so it loads only when the version was
  marked trusted (`loopml models trust NAME@vN`) or the caller passes `trusted=True`.

Other MLflow flavors (a custom pyfunc, PyTorch, ...) are stored and downloadable but not loadable by LoopML.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import yaml

from loopml.core.errors import InvalidInput, NotFound
from loopml.registry import skops_io
from loopml.registry.flavor import Flavor
from loopml.registry.skops_io import UntrustedArtifact

MLMODEL = "MLmodel"
_PICKLED = ("pickle", "cloudpickle")


class MlflowFlavor(Flavor):
    """Folders in MLflow's model format, as MLflow's client uploaded them; never chosen for a Python object."""

    name = "mlflow"

    def accepts(self, model: Any) -> bool:
        """False: LoopML registers Python objects in its own flavors; this one only stores MLflow's folders."""
        return False

    def save(self, model: Any, folder: Path) -> list[str]:
        raise InvalidInput(
            "the mlflow flavor stores folders MLflow's client logged; register objects directly"
        )

    def load(self, folder: Path, *, trusted: bool = False) -> Any:
        """The scikit-learn model of the folder: from skops through the allow-list, from a pickle only trusted."""
        spec = read_mlmodel(folder)
        flavors = spec.get("flavors")
        sklearn = flavors.get("sklearn") if isinstance(flavors, dict) else None
        if not isinstance(sklearn, dict) or not isinstance(sklearn.get("pickled_model"), str):
            named = ", ".join(sorted(map(str, flavors))) if isinstance(flavors, dict) else "none"
            raise InvalidInput(
                f"LoopML loads MLflow models of the sklearn flavor; this one has {named or 'none'} (its files can still "
                "be downloaded with mlflow.pyfunc.load_model)"
            )
        path = _inside(folder, sklearn["pickled_model"])
        kind = sklearn.get("serialization_format", "cloudpickle")
        if kind == "skops":
            return skops_io.loads(path.read_bytes())
        if kind not in _PICKLED:
            raise InvalidInput(f"unknown MLflow sklearn serialization_format {kind!r}")
        if not trusted:
            raise UntrustedArtifact(
                f"this MLflow model is a {kind} file: loading it runs whatever code its bytes name, so LoopML "
                "loads it only once someone marks the version trusted (`loopml models trust NAME@vN`)",
                types=[],
            )
        with path.open("rb") as stream:
            return pickle.load(stream)  # noqa: S301 - the version was marked trusted by a user

    def content_hash(self, model: Any) -> str:
        raise InvalidInput("mlflow-flavor versions are identified by their files, not by a model object")

    def libraries(self, model: Any = None) -> dict[str, str]:
        return {}


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """The parsed `MLmodel` file of an MLflow model folder."""
    path = folder / MLMODEL
    if not path.is_file():
        raise NotFound(f"the MLflow model at {folder.name} has no {MLMODEL} file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the {MLMODEL} file is not readable YAML: {error}") from None
    if not isinstance(spec, dict):
        raise InvalidInput(f"the {MLMODEL} file is not a YAML mapping")
    return spec


def _inside(folder: Path, name: str) -> Path:
    if "\x00" in name:
        raise InvalidInput(f"the {MLMODEL} file names a model file with a NUL byte")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise InvalidInput(f"the {MLMODEL} file names {name!r}, which is not a file of the model")
    return path
