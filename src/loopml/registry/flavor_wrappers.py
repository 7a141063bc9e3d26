"""What the `lightgbm` and `xgboost` flavors share: their library's model file beside a `wrapper.json`.

Both flavors save a Booster or one of its scikit-learn wrappers as the library's own model file and a
`wrapper.json` naming the class that was saved and its constructor params. A `NativeFormat` describes one such
flavor (its library, model file, wrapper format and classes) and holds what is the same for the two:
recognising their model classes, importing the library and reading `wrapper.json` back and checking it. This
module holds no `Flavor` subclass.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInput, NotFound
from loopml.registry.flavor import installed_version

__all__ = ["WRAPPER_FILE", "NativeFormat", "installed_versions"]

WRAPPER_FILE = "wrapper.json"
_INSTALL_HINT = "pip install 'loopml[boosting]'"


@dataclass(frozen=True)
class NativeFormat:
    """A flavor that saves a model of `library` as `model_file`, in the library's own format, + `wrapper.json`."""

    library: str  # the module, and the flavor's name
    title: str  # the library as it is written, e.g. "LightGBM"
    model_file: str
    document_format: str  # the "format" of wrapper.json
    format_version: int  # the newest "format_version" of wrapper.json this LoopML reads
    classes: tuple[str, ...]  # the names of the classes in `library` that are saved and rebuilt

    def accepts(self, model: Any) -> bool:
        """True when `model`'s type is exactly one of `classes` (False while `library` is not imported).

        A model of the library exists only once the library is imported, so this imports nothing.
        """
        library = sys.modules.get(self.library)
        if library is None:
            return False
        kinds = [getattr(library, name, None) for name in self.classes]
        return type(model) in [kind for kind in kinds if kind is not None]

    def import_library(self) -> Any:
        """The imported library; `InvalidInput` saying how to install it."""
        try:
            return importlib.import_module(self.library)
        except ImportError:
            raise InvalidInput(f"{self.title} models need {self.library}: {_INSTALL_HINT}") from None

    def read(self, folder: Path) -> dict[str, Any]:
        """The checked `wrapper.json` of the package at `folder`.

        `NotFound` when it or the model file is missing; `InvalidInput` when it is not JSON, not a wrapper file
        of this flavor, newer than `format_version`, names a class not in `classes` or has no params.
        """
        path = folder / WRAPPER_FILE
        if not path.is_file() or not (folder / self.model_file).is_file():
            raise NotFound(
                f"the model package at {folder} has no {WRAPPER_FILE} or {self.model_file}: it is incomplete "
                f"or not {self.library}"
            )
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidInput(f"{path} is not valid JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != self.document_format:
            raise InvalidInput(f"{path} is not a LoopML {self.title} wrapper file")
        version = document.get("format_version")
        if type(version) is not int or version > self.format_version:
            raise InvalidInput(
                f"{path} has format version {version!r}, newer than this LoopML reads ({self.format_version}): "
                "upgrade loopml to load it"
            )
        if document.get("class") not in self.classes:
            raise InvalidInput(f"{path} names the class {document.get('class')!r}, not one LoopML rebuilds")
        if not isinstance(document.get("params"), dict):
            raise InvalidInput(f"{path} has no params")
        return document


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Distribution name -> installed version, for those of `distributions` that are installed."""
    found = {name: installed_version(name) for name in distributions}
    return {name: version for name, version in found.items() if version is not None}
