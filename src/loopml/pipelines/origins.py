"""Origins of code: first-party (hashed as source), third-party (a package version) or the standard library.

First-party means defined in a source file outside every site-packages/dist-packages folder and outside the
standard library folders (so a project under /usr/src/app, or a venv inside the project, stays first-party),
or in `__main__` or a notebook cell. C extensions are never first-party, nor is LoopML itself, even when
installed in editable mode.

Apart from `fingerprint` because this one decision, made per file and module, sets the boundary of the walk:
first-party code is followed and hashed, everything else is only named.
"""

from __future__ import annotations

import functools
import importlib.machinery
import os
import sys
import sysconfig
from pathlib import Path
from types import FunctionType

FIRST, THIRD, STDLIB = "first-party", "third-party", "stdlib"
_LOOPML_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep


def _is_first_party_function(value: object) -> bool:
    return isinstance(value, FunctionType) and _function_origin(value) == FIRST


def _function_origin(fn: FunctionType) -> str:
    # Code from exec() or a notebook belongs to its module; a first-party one without source fails closed.
    return _file_origin(fn.__code__.co_filename) or _module_origin(
        fn.__module__ or fn.__globals__.get("__name__")
    )


def _module_origin(name: str | None) -> str:
    if not name or name == "__main__":
        return FIRST
    module = sys.modules.get(name) or sys.modules.get(name.partition(".")[0])
    filename = getattr(module, "__file__", None)
    if isinstance(filename, str) and (origin := _file_origin(filename)):
        return origin
    if name.partition(".")[0] in sys.stdlib_module_names or name in sys.builtin_module_names:
        return STDLIB
    if module is None:  # nothing loaded under that name: code made by exec() fails closed, as first-party
        return FIRST
    paths = getattr(module, "__path__", None)
    if filename is None and paths and all(_file_origin(os.path.join(p, "")) == FIRST for p in paths):
        return FIRST  # a namespace package of the project
    return THIRD


@functools.cache
def _file_origin(filename: str) -> str | None:
    """Where a file's code comes from; None when it is not a file (exec, notebook cell, frozen module)."""
    if not (os.path.isfile(filename) or os.path.isdir(filename)):
        return None
    real = os.path.realpath(filename)
    if {"site-packages", "dist-packages"} & (set(Path(real).parts) | set(Path(filename).parts)):
        return THIRD
    if real.startswith(_LOOPML_ROOT):
        # LoopML is a library to the code it runs, installed or editable: its version counts, not its
        # source (whose module state, such as caches, changes as it runs).
        return THIRD
    if any(real == root or real.startswith(root + os.sep) for root in _stdlib_roots()):
        return STDLIB
    if real.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return THIRD
    return FIRST


@functools.cache
def _stdlib_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"), os.path.dirname(os.__file__)}
    roots.update(p for p in sys.path if p.endswith(".zip") and p.startswith(sys.base_prefix))
    return tuple(sorted(os.path.realpath(root) for root in roots))
