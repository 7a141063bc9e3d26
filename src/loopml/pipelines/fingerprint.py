"""Code fingerprints: the part of a step's cache key that changes when its code does, and only then.

`code_fingerprint(fn)` hashes the normalized AST (no docstrings, comments, layout or positions) of `fn` and of
the first-party code it reaches: functions and classes it names, whole modules it uses as `mylib.helper`, the
values of simple constants, and the module-level statements that build any other global it reads (so a
changed `PATTERN = re.compile(...)` or `CONFIG = Config(lr=0.1)` counts). Third-party code enters as the
top-level names in `packages`, which `environment_fingerprint` turns into distribution versions and RECORD
hashes; the standard library is covered by the Python version.

Known limits: objects found in closures, default arguments or `functools.partial` arguments that are neither
simple constants nor code enter as their type only, as do instances built in notebook cells; attributes set
at runtime (`mylib.X = 3` from elsewhere) are not seen; nor are changes to a first-party C extension.
Code without source (exec(), bytecode only) or whose source file no longer matches the running code (edited
after import, or rewritten by an import hook) makes the fingerprint `uncacheable`: never silently stale.

This module holds the walk over references; what it leans on lives apart, each readable alone: reading and
normalizing source text in `sources`, telling first-party code from the rest in `origins`, and the environment
fingerprint (re-exported here) in `environment`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.util
import json
import linecache
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import BuiltinFunctionType, FunctionType, MappingProxyType, MethodType, ModuleType
from typing import Any

from loopml.core.hashing import hash_text
from loopml.pipelines.environment import environment_fingerprint
from loopml.pipelines.origins import (
    FIRST,
    THIRD,
    _file_origin,
    _function_origin,
    _is_first_party_function,
    _module_origin,
)
from loopml.pipelines.sources import SCHEMA, dump, function_info, matches_source, read_source, stale

__all__ = ["CodeFingerprint", "code_fingerprint", "environment_fingerprint"]

_MAX_DEPTH = 50
_CONTAINERS = (tuple, list, dict, set, frozenset)
_CODE_REFS = (ModuleType, type, FunctionType, MethodType, BuiltinFunctionType, functools.partial)


@dataclass(frozen=True)
class CodeFingerprint:
    """What a step's code contributes to its cache key; `parts` says which function, class or module changed."""

    digest: str
    parts: Mapping[str, str] = field(hash=False)
    packages: frozenset[str]
    uncacheable: str | None


def code_fingerprint(fn: Callable[..., Any]) -> CodeFingerprint:
    """Fingerprint `fn` and the first-party code it reaches; decorators on `fn` itself are ignored.

    Parts are keyed "module:qualname" (functions, classes, globals read) or "module" (whole modules); a second
    object under a key already taken (two lambdas) gets "#2". Deterministic across processes and machines.
    """
    walker = _Walker()
    root: object = fn
    for _ in range(100):  # a third-party decorator's wrapper says nothing about the step's code
        if _is_first_party_function(root) or (inner := _wrapped(root)) is None:
            break
        root = inner
    try:
        if isinstance(root, MethodType) and not isinstance(root.__self__, type):
            walker.problems.append(f"{root.__qualname__} is a bound method: its instance has no fingerprint")
        elif isinstance(root, FunctionType):
            walker.function(root, root=True)
        elif isinstance(root, _CODE_REFS):
            walker.ref(root)
        else:
            walker.problems.append(f"{root!r} is a {type(root).__qualname__}, not a function")
    except Exception as error:  # fail closed: a step we cannot read runs uncached, with the reason shown
        walker.problems.append(f"fingerprinting failed: {error!r}")
    parts = dict(sorted(walker.parts.items()))
    return CodeFingerprint(
        digest=hash_text(json.dumps([SCHEMA, list(parts.items()), sorted(walker.packages)])),
        parts=MappingProxyType(parts),
        packages=frozenset(walker.packages),
        uncacheable="; ".join(dict.fromkeys(walker.problems)) or None,
    )


class _Walker:
    """One traversal from a root: parts by key, third-party packages, and reasons the code cannot be cached."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.packages: set[str] = set()
        self.problems: list[str] = []
        self._keys: dict[Hashable, str] = {}
        self._alive: list[object] = []  # visited objects stay alive, so no id() is reused during the walk

    def claim(self, token: Hashable, base: str, obj: object) -> tuple[str, bool]:
        """The part key of `token`, and whether this is its first sight (a second sight ends a cycle)."""
        if token in self._keys:
            return self._keys[token], False
        key, number = base, 1
        while key in self.parts:
            number += 1
            key = f"{base}#{number}"
        self._keys[token] = key
        self.parts[key] = ""
        self._alive.append(obj)
        return key, True

    def ref(self, value: object) -> str:
        """A descriptor of any referenced value, visiting the code behind it."""
        if isinstance(value, _CODE_REFS):
            return self.code_ref(value)
        constant = _canonical(value)
        if constant is not None:
            return json.dumps(constant)
        inner = _unwrap(value)
        described = f"instance of {self.ref(type(value))}"
        return described if inner is value else f"{described} wrapping {self.ref(inner)}"

    def code_ref(self, value: object) -> str:
        """A descriptor of a module, class, function, method or partial, visiting the code behind it."""
        if isinstance(value, ModuleType):
            return self.module(value)
        if isinstance(value, type):
            return self.cls(value)
        if isinstance(value, FunctionType):
            return self.function(value)
        if isinstance(value, MethodType):
            return f"{self.ref(value.__func__)} bound to {self.ref(value.__self__)}"
        if isinstance(value, functools.partial):
            args = [self.ref(arg) for arg in value.args]
            keywords = {name: self.ref(arg) for name, arg in sorted(value.keywords.items())}
            return f"partial({self.ref(value.func)}, {json.dumps([args, keywords])})"
        module = getattr(value, "__module__", None) or type(getattr(value, "__self__", None)).__module__
        return self.external(value, module)  # a C function or method: math.sqrt, np.zeros, [].append

    def external(self, value: object, module: str, origin: str | None = None) -> str:
        """Name a stdlib or third-party object, recording the package of the latter."""
        if (origin or _module_origin(module)) == THIRD:
            self.packages.add(module.partition(".")[0])
        if isinstance(value, ModuleType):
            return f"module {module}"
        return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}"

    def global_(self, namespace: Mapping[str, Any], name: str) -> str | None:
        """A descriptor of global `name` as code in `namespace` sees it; None when it is not bound."""
        if name not in namespace:
            return f"builtins.{name}" if name in builtins.__dict__ else None
        value = namespace[name]
        if isinstance(value, _CODE_REFS) or _unwrap(value) is not value:  # code, or wrapped code (lru_cache)
            return self.ref(value)
        key, new = self.claim(("global", id(namespace), name), f"{namespace.get('__name__')}:{name}", value)
        if new:
            constant = _canonical(value)
            if constant is not None:
                self.parts[key] = hash_text(json.dumps(constant))
            else:
                refs = {"__type__": self.ref(type(value))}
                self.parts[key] = hash_text(json.dumps([self.bindings(namespace, name, refs), refs]))
        return key

    def bindings(self, namespace: Mapping[str, Any], name: str, refs: dict[str, str]) -> list[str]:
        """Dumps of the module-level statements that bind `name`, adding what they read to `refs`."""
        filename = namespace.get("__file__")
        source = read_source(filename, namespace) if isinstance(filename, str) else None
        dumps = []
        for statement in source.bindings.get(name, []) if source else []:
            dumps.append(ast.dump(statement))
            for node in ast.walk(statement):  # `from config import CONFIG`: how config builds it counts
                aliases = (
                    {a.asname or a.name: a.name for a in node.names}
                    if isinstance(node, ast.ImportFrom)
                    else {}
                )
                if name in aliases:
                    module = sys.modules.get(_resolve(node, namespace) or "")
                    if module is not None and _module_origin(module.__name__) == FIRST:
                        refs[f"from {module.__name__}"] = self.global_(vars(module), aliases[name]) or ""
            for loaded in sorted(_loaded_names(statement)):
                if (described := self.global_(namespace, loaded)) is not None:
                    refs[loaded] = described
        return dumps

    def function(self, fn: FunctionType, *, root: bool = False) -> str:
        """Visit a function: its AST, the globals it reads, its closure cells, defaults and wrapped function."""
        module = fn.__module__ or str(fn.__globals__.get("__name__", "<exec>"))
        origin = _function_origin(fn)
        if origin != FIRST:
            return self.external(fn, module, origin)
        key, new = self.claim(("object", id(fn)), f"{module}:{fn.__code__.co_qualname}", fn)
        if not new:
            return key
        info = function_info(fn, key, root=root)
        if isinstance(info, str):
            self.problems.append(info)
            return key
        refs = {name: d for name in info.names if (d := self.global_(fn.__globals__, name)) is not None}
        cells = zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True)
        closure = {name: self.ref(cell.cell_contents) for name, cell in cells if _filled(cell)}
        defaults = [self.ref(value) for value in fn.__defaults__ or ()]
        keywords = {name: self.ref(value) for name, value in sorted((fn.__kwdefaults__ or {}).items())}
        inner = _unwrap(fn)
        wrapped = None if inner is fn else self.ref(inner)
        self.parts[key] = hash_text(json.dumps([info.digest, refs, closure, defaults, keywords, wrapped]))
        return key

    def cls(self, cls: type) -> str:
        """Visit a class: its AST (or the statement that made it), the globals it reads, and its methods."""
        origin = _module_origin(cls.__module__)
        if origin != FIRST:
            return self.external(cls, cls.__module__, origin)
        key, new = self.claim(("object", id(cls)), f"{cls.__module__}:{cls.__qualname__}", cls)
        if not new:
            return key
        methods = _methods(cls)
        module = sys.modules.get(cls.__module__)
        namespace: Mapping[str, Any] = vars(module) if module else {}
        filename = getattr(module, "__file__", None)
        if not isinstance(filename, str) and methods:  # a notebook cell: the methods know where it is
            namespace, filename = methods[0][1].__globals__, methods[0][1].__code__.co_filename
        source = read_source(filename, namespace) if isinstance(filename, str) else None
        defs = source.defs.get(cls.__qualname__, []) if source else []
        nodes: list[ast.AST] = [node for node in defs if isinstance(node, ast.ClassDef)]
        if not nodes and source and "." not in cls.__qualname__:  # made by a call: namedtuple(), type()
            nodes = list(source.bindings.get(cls.__name__, []))
        if not nodes:
            self.problems.append(f"the source of class {key} is unavailable")
            return key
        names = sorted(set().union(*(_loaded_names(node) for node in nodes)))
        refs = {name: d for name in names if (d := self.global_(namespace, name)) is not None}
        members = {name: self.ref(fn) for name, fn in methods if _has_source(fn)}
        dumps = [dump(node, drop_decorators=False) for node in nodes]
        self.parts[key] = hash_text(json.dumps([dumps, refs, members]))
        return key

    def module(self, module: ModuleType) -> str:
        """Visit a whole module: its AST and the first-party modules, functions and classes it imports."""
        origin = _module_origin(module.__name__)
        if origin != FIRST:
            return self.external(module, module.__name__, origin)
        key, new = self.claim(("object", id(module)), module.__name__, module)
        if not new:
            return key
        filename = getattr(module, "__file__", None)
        source = read_source(filename, vars(module)) if isinstance(filename, str) else None
        if source is None and not hasattr(module, "__path__"):
            self.problems.append(f"the source of module {key} is unavailable")
            return key
        refs: dict[str, str] = {}
        for name, value in sorted(vars(module).items()):
            if isinstance(value, FunctionType) and value.__code__.co_filename == filename:
                if source and not matches_source(value.__code__, source):
                    self.problems.append(stale(f"module {key}"))
            elif isinstance(value, ModuleType | FunctionType | functools.partial) or (
                isinstance(value, type) and value.__module__ != module.__name__
            ):
                refs[name] = self.ref(value)
        for node in source.tree.body if source else []:  # `from helpers import SCALE` makes helpers count
            imported = sys.modules.get(_resolve(node, vars(module)) or "")
            if imported is not None:
                refs[f"from {imported.__name__}"] = self.ref(imported)
        self.parts[key] = hash_text(json.dumps([source.digest if source else "namespace package", refs]))
        return key


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _methods(cls: type) -> list[tuple[str, FunctionType]]:
    methods = []
    for name, member in sorted(vars(cls).items()):
        value = member.__func__ if isinstance(member, staticmethod | classmethod) else member
        value = value.func if isinstance(value, functools.cached_property) else value
        if isinstance(value, property):
            accessors = [("fget", value.fget), ("fset", value.fset), ("fdel", value.fdel)]
            methods += [(f"{name}.{kind}", f) for kind, f in accessors if isinstance(f, FunctionType)]
        elif isinstance(value, FunctionType):
            methods.append((name, value))
    return methods


def _has_source(fn: FunctionType) -> bool:
    """False for methods generated with exec (a dataclass __init__): the class body they come from is hashed."""
    filename = fn.__code__.co_filename
    return _file_origin(filename) is not None or bool(linecache.getlines(filename, fn.__globals__))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _wrapped(value: object) -> object | None:
    try:
        return None if isinstance(value, type | ModuleType) else getattr(value, "__wrapped__", None)
    except Exception:  # an odd __getattr__ (a proxy) is no reason to fail
        return None


def _unwrap(value: object) -> object:
    """The innermost `__wrapped__` (functools.wraps, lru_cache), stopping at cycles."""
    seen = {id(value)}
    while (inner := _wrapped(value)) is not None and id(inner) not in seen:
        seen.add(id(inner))
        value = inner
    return value


def _canonical(value: object, depth: int = 0) -> Any:
    """Type-tagged JSON form of a simple constant, so 1, 1.0, "1" and True differ; None when not simple."""
    kind = type(value)
    if value is None or kind in (bool, int, float, complex):
        return [kind.__name__, repr(value)]  # repr keeps every float bit (and -0.0, nan, inf)
    if isinstance(value, str | bytes) and kind in (str, bytes):
        return [kind.__name__, value if isinstance(value, str) else value.hex()]
    if not isinstance(value, _CONTAINERS) or kind not in _CONTAINERS:
        return None  # subclasses (enums, named tuples) are objects: their class counts
    if depth > _MAX_DEPTH:
        raise ValueError(f"a constant nested deeper than {_MAX_DEPTH} levels")
    forms = [_canonical(item, depth + 1) for item in (value.items() if isinstance(value, dict) else value)]
    if any(form is None for form in forms):
        return None
    if kind in (set, frozenset):  # set order varies between processes
        forms.sort(key=json.dumps)
    return [kind.__name__, forms]


def _resolve(node: ast.AST, namespace: Mapping[str, Any]) -> str | None:
    """The absolute module name of a `from ... import` statement, relative ones included."""
    if not isinstance(node, ast.ImportFrom):
        return None
    try:
        return importlib.util.resolve_name(
            "." * node.level + (node.module or ""), namespace.get("__package__")
        )
    except (ImportError, ValueError):
        return None
