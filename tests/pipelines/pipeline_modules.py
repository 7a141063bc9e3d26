"""Write pipeline code into a temporary first-party module, import it, edit it and import it again."""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from pathlib import Path
from types import ModuleType

_counter = itertools.count()


class ModuleFiles:
    """First-party modules in a folder on sys.path; `write` (re)imports a module from fresh source."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: list[str] = []
        self.prefix = f"lmtest{next(_counter)}_"

    def write(self, name: str, source: str) -> ModuleType:
        """Write `name`.py (under a unique real name) and import it anew (also re-imports modules using it)."""
        real = self.prefix + name
        path = self.folder / f"{real}.py"
        path.write_text(textwrap.dedent(source).replace("MOD_", self.prefix))
        if real not in self.names:
            self.names.append(real)
        for loaded in self.names:
            sys.modules.pop(loaded, None)
        importlib.invalidate_caches()
        return importlib.import_module(real)

    def reimport(self, name: str) -> ModuleType:
        """Import `name` again from its current source (after a module it uses changed)."""
        for loaded in self.names:
            sys.modules.pop(loaded, None)
        importlib.invalidate_caches()
        return importlib.import_module(self.prefix + name)

    def forget(self) -> None:
        """Drop the modules from sys.modules."""
        for loaded in self.names:
            sys.modules.pop(loaded, None)
