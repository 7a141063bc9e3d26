"""Source text behind running code: read once per file version, parsed, normalized, and searched by qualname.

`code_fingerprint` hashes definitions as this module gives them: the AST without docstrings, comments, layout
or positions, found by the `__qualname__` Python gives the code, and checked against the running bytecode so a
file edited since its import is never taken for the code that runs. Files are read again only when their
(mtime, size) changes; text in linecache (a notebook cell) is keyed by the text itself.

Apart from `fingerprint` because parsing and normalizing source text is a job of its own, with its own memos;
the walk over references only asks it for a definition's digest.
"""

from __future__ import annotations

import ast
import copy
import dis
import linecache
import os
import stat
import time
import tokenize
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Any

from loopml.core.hashing import hash_text

SCHEMA = 1  # bump when the normalization changes, so old keys stop matching
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_SCOPES = {
    ast.ListComp: "listcomp",
    ast.SetComp: "setcomp",
    ast.DictComp: "dictcomp",
    ast.GeneratorExp: "genexpr",
}


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


def read_source(filename: str, namespace: Mapping[str, Any]) -> _Source | None:
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


def matches_source(code: CodeType, source: _Source) -> bool:
    candidates = (source.compiled or {}).get(code.co_qualname, [])
    return source.compiled is None or any(_same_code(candidate, code) for candidate in candidates)


def stale(what: str) -> str:
    return (
        f"the source file of {what} does not match the running code (edited since it was imported, or "
        "rewritten by an import hook): restart the process to cache it"
    )


def function_info(fn: FunctionType, label: str, *, root: bool) -> _FunctionInfo | str:
    """The normalized-AST digest and global names of `fn`'s code (memoized by code object), or why not."""
    code = fn.__code__
    memo = _FUNCTIONS.get((id(code), root))
    if memo is not None and memo[0] is code:
        return memo[1]
    source = read_source(code.co_filename, fn.__globals__)
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
        return stale(label) if source.compiled is not None else f"no definition of {label} in its source"
    digest = hash_text("\n".join(dump(node, drop_decorators=root) for node in nodes))
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


def dump(node: ast.AST, *, drop_decorators: bool) -> str:
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
