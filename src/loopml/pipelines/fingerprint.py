"""Code and environment fingerprints: the parts of a step's cache key that change when its code does, and only then.

`code_fingerprint(fn)` hashes the normalized AST (no docstrings, comments, layout or positions) of `fn` and of
the first-party code it reaches: functions and classes it names, whole modules it uses as `mylib.helper`, the
values of simple constants, and the module-level statements that build any other global it reads (so a
changed `PATTERN = re.compile(...)` or `CONFIG = Config(lr=0.1)` counts). Third-party code enters as the
top-level names in `packages`, which `environment_fingerprint` turns into distribution versions and RECORD
hashes; the standard library is covered by the Python version.

First-party means defined in a source file outside every site-packages/dist-packages folder and outside the
standard library folders (so a project under /usr/src/app, or a venv inside the project, stays first-party),
or in `__main__` or a notebook cell. C extensions are never first-party.

Known limits: objects found in closures, default arguments or `functools.partial` arguments that are neither
simple constants nor code enter as their type only, as do instances built in notebook cells; attributes set
at runtime (`mylib.X = 3` from elsewhere) are not seen; nor are changes to a first-party C extension.
Code without source (exec(), bytecode only) or whose source file no longer matches the running code (edited
after import, or rewritten by an import hook) makes the fingerprint `uncacheable`: never silently stale.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dis
import functools
import importlib.machinery
import importlib.util
import json
import linecache
import os
import stat
import sys
import sysconfig
import tempfile
import time
import tokenize
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import BuiltinFunctionType, CodeType, FunctionType, MappingProxyType, MethodType, ModuleType
from typing import Any

from loopml.core.hashing import hash_file, hash_text

SCHEMA = 1  # bump when the normalization changes, so old keys stop matching
FIRST, THIRD, STDLIB = "first-party", "third-party", "stdlib"
_MAX_DEPTH = 50
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_SCOPES = {
    ast.ListComp: "listcomp",
    ast.SetComp: "setcomp",
    ast.DictComp: "dictcomp",
    ast.GeneratorExp: "genexpr",
}
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
        source = _source(filename, namespace) if isinstance(filename, str) else None
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
        info = _function_info(fn, key, root=root)
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
        source = _source(filename, namespace) if isinstance(filename, str) else None
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
        dumps = [_dump(node, drop_decorators=False) for node in nodes]
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
        source = _source(filename, vars(module)) if isinstance(filename, str) else None
        if source is None and not hasattr(module, "__path__"):
            self.problems.append(f"the source of module {key} is unavailable")
            return key
        refs: dict[str, str] = {}
        for name, value in sorted(vars(module).items()):
            if isinstance(value, FunctionType) and value.__code__.co_filename == filename:
                if source and not _matches_source(value.__code__, source):
                    self.problems.append(_stale(f"module {key}"))
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


@dataclass
class _Source:
    """One version of a source text, parsed once: definitions by qualified name and module-level bindings."""

    tree: ast.Module
    defs: dict[str, list[ast.AST]]
    bindings: dict[str, list[ast.stmt]]
    compiled: dict[str, list[CodeType]] | None  # files only: to tell whether the running code is this text
    _digest: str = ""

    @property
    def digest(self) -> str:
        """Hash of the whole normalized module."""
        if not self._digest:
            self._digest = hash_text(ast.dump(self.tree))
        return self._digest


@dataclass(frozen=True)
class _FunctionInfo:
    digest: str
    names: tuple[str, ...]


# Per-process memos. Code objects are held, so their id() is never reused while the entry lives.
_SOURCES: dict[str, tuple[object, bool, _Source]] = {}  # file name -> (version, trusted, parsed source)
_FUNCTIONS: dict[tuple[int, bool], tuple[CodeType, _FunctionInfo]] = {}


def _source(filename: str, namespace: Mapping[str, Any]) -> _Source | None:
    """The parsed source behind `filename`: a file, or lines in linecache (a notebook cell); None if neither."""
    try:
        status = os.stat(filename)
        is_file = stat.S_ISREG(status.st_mode)
    except (OSError, ValueError):
        is_file = False
    cached = _SOURCES.get(filename)
    if is_file:
        version: object = (status.st_mtime_ns, status.st_size)
        if cached is not None and cached[0] == version and cached[1]:
            return cached[2]
        # (mtime, size) cannot tell apart two same-size writes in one clock tick: distrust fresh files.
        tick = 2_000_000_000 if status.st_mtime_ns % 1_000_000_000 == 0 else 100_000_000
        trusted = time.time_ns() - status.st_mtime_ns >= tick
        try:
            with tokenize.open(filename) as stream:
                text = stream.read()
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
    else:
        text = "".join(linecache.getlines(filename, dict(namespace)))
        version, trusted = text, True
        if cached is not None and cached[0] == text:
            return cached[2]
        if not text:
            return None
    with warnings.catch_warnings():  # the import already warned about e.g. invalid escapes
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(text, filename)
            compiled = _code_index(compile(tree, filename, "exec", dont_inherit=True)) if is_file else None
        except (SyntaxError, ValueError):
            return None
    source = _Source(tree, _index_defs(tree), _index_bindings(tree), compiled)
    _SOURCES[filename] = (version, trusted, source)
    return source


def _index_defs(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """Definitions (functions, classes, lambdas) by the `__qualname__` Python gives them; drops docstrings."""
    defs: dict[str, list[ast.AST]] = {}
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = node.body[1:] or [ast.Pass()]  # a docstring: documentation, not behaviour
        # Decorators, defaults, bases and a comprehension's first iterable run in the enclosing scope.
        children = [(child, prefix) for child in ast.iter_child_nodes(node)]
        if isinstance(node, _DEFS):
            qualname = prefix + getattr(node, "name", "<lambda>")
            defs.setdefault(qualname, []).append(node)
            inner = qualname + ("." if isinstance(node, ast.ClassDef) else ".<locals>.")
            body = node.body if isinstance(node.body, list) else [node.body]
            children = [(child, inner if any(child is b for b in body) else prefix) for child, _ in children]
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            inner = f"{prefix}<{_SCOPES[type(node)]}>."
            first_iterable = node.generators[0].iter
            parts = [c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.comprehension)]
            parts += [c for generator in node.generators for c in ast.iter_child_nodes(generator)]
            children = [(child, prefix if child is first_iterable else inner) for child in parts]
        stack.extend(children)
    return defs


def _index_bindings(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """Module-level statements by the global names they bind (functions and classes are visited as code)."""
    bindings: dict[str, list[ast.stmt]] = {}
    for statement in tree.body:
        names: set[str] = set()
        stack: list[ast.AST] = [statement]
        while stack:
            node = stack.pop()
            if isinstance(node, _DEFS):
                continue
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
            stack.extend(ast.iter_child_nodes(node))
        for name in names:
            bindings.setdefault(name, []).append(statement)
    return bindings


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _code_index(code: CodeType) -> dict[str, list[CodeType]]:
    index: dict[str, list[CodeType]] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        index.setdefault(current.co_qualname, []).append(current)
        stack.extend(const for const in current.co_consts if isinstance(const, CodeType))
    return index


def _same_code(a: CodeType, b: CodeType) -> bool:
    """Same bytecode, names and constants, line numbers aside: the running code was compiled from this text."""
    if (a.co_code, a.co_names, a.co_varnames, len(a.co_consts)) != (
        b.co_code, b.co_names, b.co_varnames, len(b.co_consts)
    ):  # fmt: skip
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=True):
        if isinstance(x, CodeType) and isinstance(y, CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or x != y or (isinstance(x, float | complex) and repr(x) != repr(y)):
            return False
    return True


def _matches_source(code: CodeType, source: _Source) -> bool:
    candidates = (source.compiled or {}).get(code.co_qualname, [])
    return source.compiled is None or any(_same_code(candidate, code) for candidate in candidates)


def _stale(what: str) -> str:
    return (
        f"the source file of {what} does not match the running code (edited since it was imported, or "
        "rewritten by an import hook): restart the process to cache it"
    )


def _function_info(fn: FunctionType, label: str, *, root: bool) -> _FunctionInfo | str:
    """The normalized-AST digest and global names of `fn`'s code (memoized by code object), or why not."""
    code = fn.__code__
    memo = _FUNCTIONS.get((id(code), root))
    if memo is not None and memo[0] is code:
        return memo[1]
    source = _source(code.co_filename, fn.__globals__)
    if source is None:
        return f"the source of {label} is unavailable (defined with exec() or shipped as bytecode only)"
    nodes = [n for n in source.defs.get(code.co_qualname, []) if not isinstance(n, ast.ClassDef)]
    if source.compiled is not None:  # the definition whose compiled code is the running code
        compiled = source.compiled.get(code.co_qualname, [])
        nodes = [
            n for n in nodes if any(_same_code(c, code) for c in compiled if c.co_firstlineno == _line(n))
        ]
    nodes = [n for n in nodes if _line(n) == code.co_firstlineno] or nodes
    if len(nodes) > 1:  # lambdas on one line: keep the one whose span holds the code's positions
        spots = [
            (ln, col) for ln, _, col, end in code.co_positions() if ln and col is not None and col != end
        ]
        spot = min(spots, default=(0, 0))
        nodes = [n for n in nodes if _span(n)[0] <= spot <= _span(n)[1]] or nodes
    if not nodes:
        return _stale(label) if source.compiled is not None else f"no definition of {label} in its source"
    digest = hash_text("\n".join(_dump(node, drop_decorators=root) for node in nodes))
    info = _FunctionInfo(digest, tuple(sorted(_global_names(code))))
    _FUNCTIONS[(id(code), root)] = (code, info)
    return info


def _line(node: ast.AST) -> int:
    """The first line Python gives the code of a definition: its first decorator's, if any."""
    decorators = getattr(node, "decorator_list", None)
    return int(decorators[0].lineno if decorators else getattr(node, "lineno", 0))


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    start = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
    return start, (getattr(node, "end_lineno", None) or 0, getattr(node, "end_col_offset", None) or 0)


def _dump(node: ast.AST, *, drop_decorators: bool) -> str:
    # The step's own decorators carry run options (retries, resources) that do not change its outputs.
    if drop_decorators and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        node = copy.copy(node)
        node.decorator_list = []
    return ast.dump(node, include_attributes=False)


def _global_names(code: CodeType) -> set[str]:
    """Global names the code and its nested code read: exact, unlike co_names, which also holds attributes."""
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in {"LOAD_GLOBAL", "LOAD_NAME"}:
                names.add(str(instruction.argval))
        stack.extend(const for const in current.co_consts if isinstance(const, CodeType))
    return names


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


_TABLES: dict[str, dict[str, list[list[str]]]] = {}  # environment key -> import name -> [[dist, version]]


def environment_fingerprint(
    packages: Iterable[str], *, cache_dir: Path | None = None, lock_files: Sequence[Path] = ()
) -> dict[str, str]:
    """{"python": "CPython 3.11.7 linux-x86_64"} plus "<dist>": "<version>:<RECORD hash>" per installed import name.

    Import names map to distributions through `importlib.metadata.packages_distributions()`, which is slow, so
    the table is memoized in-process and in `cache_dir/environment-<key>.json`. The key covers the Python build,
    `sys.prefix`, the entry names of every site-packages folder on `sys.path` (dist-info names carry versions,
    so a pip install changes them) and the content of `lock_files`. Names that are not installed are ignored.
    """
    key = _environment_key(lock_files)
    table = _TABLES.get(key)
    if table is None:
        path = cache_dir / f"environment-{key}.json" if cache_dir is not None else None
        table = _read_table(path) if path is not None else None
        if table is None:
            table = _package_table()
            if path is not None:
                _write_atomically(path, json.dumps(table, sort_keys=True))
        _TABLES[key] = table
    result = {"python": _python_tag()}
    for name in sorted(set(packages)):
        result.update((dist, value) for dist, value in table.get(name, []))
    return result


def _environment_key(lock_files: Sequence[Path]) -> str:
    listings = []
    for folder in sys.path:
        if os.path.basename(os.path.normpath(folder)) in {"site-packages", "dist-packages"}:
            try:
                listings.append([folder, sorted(os.listdir(folder))])
            except OSError:
                listings.append([folder, []])
    locks = [hash_file(path) for path in lock_files if path.is_file()]
    return hash_text(json.dumps([SCHEMA, sys.version, sys.prefix, listings, locks]))


def _package_table() -> dict[str, list[list[str]]]:
    """import name -> [[distribution, "version:RECORD hash"], ...] for everything installed."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in versions:  # the first on sys.path wins, as it does for imports
            record = dist.read_text("RECORD")
            versions[name] = dist.version if record is None else f"{dist.version}:{hash_text(record)}"
    return {
        name: sorted([dist, versions[dist]] for dist in set(dists) if dist in versions)
        for name, dists in metadata.packages_distributions().items()
    }


def _read_table(path: Path) -> dict[str, list[list[str]]] | None:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    valid = isinstance(table, dict) and all(isinstance(rows, list) for rows in table.values())
    return table if valid else None


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".environment-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:  # the file only saves time: a read-only cache folder must not stop a run
        pass


@functools.cache
def _python_tag() -> str:
    import platform

    return f"{platform.python_implementation()} {platform.python_version()} {sysconfig.get_platform()}"
