"""Canonical content hashes of in-memory values whose stored bytes are not canonical (models).

Two skops dumps of the same fitted model differ byte for byte, so a model's identity (in pipeline cache keys
and in the registry's package hashes) is taken from the object itself: a walk over its class, constructor params
and fitted state that writes every value as type-tagged, length-prefixed bytes into one BLAKE3 stream. Equal
values give equal digests; a bool, an int and a float that compare equal do not. numpy, pandas and scikit-learn
are recognised through `sys.modules` and never imported here: a value of a package that was never imported
cannot exist.
"""

from __future__ import annotations

import enum
import functools
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_chunks

MAX_DEPTH = 200
# Wall-clock timings that a search stores beside its results: two identical fits never share them.
_VOLATILE_ATTRIBUTES = frozenset({"refit_time_"})
_VOLATILE_RESULTS = frozenset({"mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"})

Chunk = bytes | memoryview


class NotCanonical(InvalidInput):
    """A value holds an object the walk cannot describe by its content (a lock, a cycle, an opaque handle)."""

    code = "not_canonical"


def canonical_hash(value: Any) -> str:
    """BLAKE3 digest of `value` by content: estimators, numpy arrays and random states, builtin containers."""
    return hash_chunks(_Walk().walk(value, 0))  # type: ignore[arg-type]  # blake3 takes any buffer


def _frame(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "little") + payload


def _path(cls: type) -> bytes:
    return f"{cls.__module__}.{cls.__qualname__}".encode()


class _Walk:
    """One traversal; remembers the containers on the current path to refuse cycles."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def encoded(self, value: Any, depth: int) -> bytes:
        return b"".join(bytes(chunk) for chunk in self.walk(value, depth))

    def walk(self, value: Any, depth: int) -> Iterator[Chunk]:
        if depth > MAX_DEPTH:
            raise NotCanonical(f"cannot hash a value nested deeper than {MAX_DEPTH} levels")
        kind = type(value)
        if value is None:
            yield b"N"
        elif kind is bool:
            yield b"B1" if value else b"B0"
        elif kind is int:
            yield _frame(b"I", hex(value).encode())  # hex, as str() refuses ints over 4300 digits
        elif kind is float or kind is complex:
            yield _frame(b"F" if kind is float else b"J", repr(value).encode())
        elif kind is str:
            yield _frame(b"S", value.encode("utf-8", "surrogatepass"))
        elif kind is bytes or kind is bytearray:
            yield _frame(b"Y", bytes(value))
        else:
            self._enter(value)
            try:
                yield from self._composite(value, depth + 1)
            finally:
                self._open.discard(id(value))

    def _enter(self, value: Any) -> None:
        if id(value) in self._open:
            raise NotCanonical(f"cannot hash a {type(value).__qualname__} that contains itself")
        self._open.add(id(value))

    def _composite(self, value: Any, depth: int) -> Iterator[Chunk]:
        kind = type(value)
        np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
        if np is not None and isinstance(value, np.ndarray | np.generic | np.dtype | np.ufunc):
            yield from self._numpy(np, value, depth)
        elif np is not None and isinstance(value, np.random.RandomState):
            yield b"R"
            yield from self.walk(value.get_state(legacy=False), depth)
        elif np is not None and isinstance(value, np.random.Generator | np.random.BitGenerator):
            yield _frame(b"g", _path(kind))
            state = value.bit_generator.state if isinstance(value, np.random.Generator) else value.state
            yield from self.walk(state, depth)
        elif pd is not None and isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            yield from self._pandas(pd, value, depth)
        elif isinstance(value, list | tuple | set | frozenset | dict):
            yield from self._container(value, depth)
        elif isinstance(value, enum.Enum):
            yield _frame(b"e", _path(kind) + b"." + value.name.encode())
        elif isinstance(value, int | float | complex | str | bytes):  # subclasses: the type, then the value
            yield _frame(b"s", _path(kind))
            base: Any = next(b for b in (bool, int, float, complex, str, bytes) if isinstance(value, b))
            yield from self.walk(base(value), depth)
        elif isinstance(value, slice | range):
            yield _frame(b"r", _path(kind))
            yield from self.walk((value.start, value.stop, value.step), depth)
        elif isinstance(value, type):
            yield _frame(b"C", _path(value))
        elif isinstance(value, types.ModuleType):
            yield _frame(b"m", value.__name__.encode())
        else:
            yield from self._object(value, depth)

    def _numpy(self, np: Any, value: Any, depth: int) -> Iterator[Chunk]:
        if isinstance(value, np.ndarray):
            yield from self._array(np, value, depth)
            if type(value) is not np.ndarray:  # a masked array or matrix keeps more than its data
                yield _frame(b"o", _path(type(value)))
                yield from self.walk(vars(value), depth)
        elif isinstance(value, np.generic):
            yield _frame(b"G", _descr(value.dtype))
            yield from self._array(np, np.asarray(value), depth)
        elif isinstance(value, np.dtype):
            yield _frame(b"D", _descr(value))
        else:  # ufuncs are referred to by name, as skops stores them
            yield _frame(b"U", f"numpy.{value.__name__}".encode())

    def _array(self, np: Any, array: Any, depth: int) -> Iterator[Chunk]:
        dtype = array.dtype
        yield _frame(b"A", _descr(dtype) + repr(array.shape).encode())
        if dtype.fields is not None:
            # Field by field: the padding bytes between fields of a record are uninitialised memory.
            for name in dtype.names:
                yield from self._array(np, array[name], depth + 1)
        elif dtype.hasobject:
            for item in array.ravel(order="C"):
                yield from self.walk(item, depth + 1)
        else:
            # C order whatever the memory layout, so a Fortran-ordered copy hashes equal; no copy when it is C.
            flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            yield b"b" + flat.size.to_bytes(8, "little")
            yield memoryview(flat)

    def _pandas(self, pd: Any, value: Any, depth: int) -> Iterator[Chunk]:
        yield _frame(b"P", _path(type(value)))
        if isinstance(value, pd.Index):
            yield from self.walk([str(value.dtype), list(value.names), value.to_numpy()], depth)
            return
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        columns = [frame.iloc[:, i] for i in range(frame.shape[1])]
        parts = [value.name if isinstance(value, pd.Series) else None, frame.columns, frame.index]
        parts += [[str(column.dtype), column.to_numpy()] for column in columns]
        yield from self.walk(parts, depth)

    def _container(self, value: Any, depth: int) -> Iterator[Chunk]:
        kind = type(value)
        tag = {list: b"L", tuple: b"T", set: b"E", frozenset: b"E", dict: b"M"}
        base = next(b for b in (dict, list, tuple, frozenset, set) if isinstance(value, b))
        yield _frame(tag[base], b"" if kind is base else _path(kind))
        yield len(value).to_bytes(8, "little")
        if base is dict:
            # Sorted by encoded key, so insertion order does not matter.
            entries = sorted(((self.encoded(k, depth), v) for k, v in value.items()), key=lambda e: e[0])
            for key, item in entries:
                yield key
                yield from self.walk(item, depth)
        elif base in (set, frozenset):
            yield from sorted(self.encoded(item, depth) for item in value)
        else:
            for item in value:
                yield from self.walk(item, depth)

    def _object(self, value: Any, depth: int) -> Iterator[Chunk]:
        kind = type(value)
        if isinstance(value, functools.partial):
            yield _frame(b"p", _path(kind))
            yield from self.walk((value.func, value.args, value.keywords), depth)
        elif inspect.ismethod(value) or (inspect.isbuiltin(value) and not _is_module(value.__self__)):
            yield _frame(b"k", value.__name__.encode())  # a bound method: its name and its object
            yield from self.walk(value.__self__, depth)
        elif inspect.isfunction(value) or inspect.isbuiltin(value):
            # By reference, as skops stores a function; a lambda's body is not part of the hash.
            yield _frame(b"f", f"{value.__module__}.{value.__qualname__}".encode())
        elif hasattr(value, "get_params"):  # a scikit-learn estimator: its params, then the rest of its state
            params = value.get_params(deep=False)
            state = {
                key: item
                for key, item in getattr(value, "__dict__", {}).items()
                if key not in _VOLATILE_ATTRIBUTES and not (key in params and params[key] is item)
            }
            if isinstance(state.get("cv_results_"), dict):
                state["cv_results_"] = {
                    k: v for k, v in state["cv_results_"].items() if k not in _VOLATILE_RESULTS
                }
            yield _frame(b"X", _path(kind))
            yield from self.walk(params, depth)
            yield from self.walk(state, depth)
        else:
            yield _frame(b"O", _path(kind))
            yield from self.walk(_state(value), depth)


def _is_module(owner: Any) -> bool:
    return owner is None or isinstance(owner, types.ModuleType)


def _descr(dtype: Any) -> bytes:
    # dtype.str of a record dtype is only "|V<size>": its fields' names and types need the descr.
    return (dtype.str if dtype.fields is None else repr(dtype.descr)).encode()


def _state(value: Any) -> Any:
    """An object's attributes, or what it gives to pickle (Cython classes such as sklearn's Tree have no dict)."""
    try:
        if getattr(type(value), "__getstate__", None) is object.__getstate__ and hasattr(value, "__dict__"):
            return vars(value)
        state = value.__getstate__()
    except (TypeError, AttributeError):
        state = None
    if state is None:
        raise NotCanonical(f"cannot hash a {type(value).__qualname__} by its content: it exposes no state")
    return state
