"""How pipeline step outputs become stored artifacts: pluggable serializers, chosen by the value, and content hashes.

Each output is dumped to bytes by the first serializer of a registry that accepts it and stored as a
content-addressed blob under `name@version`. Its `content_hash` enters the cache keys of downstream steps, so it
is a hash of the *value*: equal values hash equal even when their bytes differ (Parquet writer metadata, skops
zip entries). Built-ins, in order: json, npy, parquet, skops; user serializers go first by default. None uses
pickle, and loading a skops model only trusts types on LoopML's allow-list, never a list read from the artifact.

pandas, pyarrow, numpy, scikit-learn and skops are optional: a value's type is recognised through `sys.modules`
(a value of a package never imported cannot exist) and the package is imported only to dump or load one.
"""

from __future__ import annotations

import abc
import builtins
import io
import json
import logging
import math
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import hash_bytes, hash_chunks
from loopml.pipelines.model_hash import NotCanonical, canonical_hash

_log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 100
_TAG = "__loopml__"
_LABEL = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)@(?P<version>[0-9]+)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_KIND, _SERIES_NAME, _SERIES_COLUMN = b"loopml.kind", b"loopml.series_name", "series"
# Module prefixes a skops artifact may name; "what skops needs" is skops itself. builtins are handled apart.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "collections.", "skops.")


class Unserializable(InvalidInput):
    """No registered serializer can store a value (or the one that accepted it failed to)."""

    code = "unserializable"


class UntrustedArtifact(InvalidInput):
    """A stored model names types outside LoopML's allow-list, so it is refused rather than loaded."""

    code = "untrusted_artifact"


class Serializer(abc.ABC):
    """Turns one kind of value into bytes and back; `name@version` is recorded with the artifact."""

    name: ClassVar[str]
    version: ClassVar[int]  # bumped when the stored format changes; it is part of cache keys
    extension: ClassVar[str]

    @abc.abstractmethod
    def accepts(self, value: Any) -> bool:
        """True when this serializer can store `value` and give back an equal one."""

    @abc.abstractmethod
    def dump(self, value: Any) -> bytes:
        """The bytes stored for `value`."""

    @abc.abstractmethod
    def load(self, data: bytes) -> Any:
        """The value that `dump` stored as `data`."""

    def content_hash(self, value: Any, data: bytes) -> str:
        """Canonical hash of the value (equal values, equal hash); by default the hash of the stored bytes."""
        return hash_bytes(data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}@{self.version}>"


class SerializerRegistry:
    """An ordered list of serializers; a value goes to the first that accepts it."""

    def __init__(self, serializers: Iterable[Serializer] = ()) -> None:
        self._serializers: list[Serializer] = []
        self._lock = threading.Lock()
        for serializer in serializers:
            self.register(serializer, first=False)

    def register(self, serializer: Serializer, *, first: bool = True) -> None:
        """Add `serializer` first (it wins over the built-ins) or last; one with the same name is replaced."""
        _check(serializer)
        with self._lock:  # readers iterate a snapshot, so the list is replaced, never changed in place
            kept = [s for s in self._serializers if s.name != serializer.name]
            self._serializers = [serializer, *kept] if first else [*kept, serializer]

    def __iter__(self) -> Iterator[Serializer]:
        return iter(self._serializers)

    def for_value(self, value: Any) -> Serializer:
        """The first serializer that accepts `value`; `Unserializable` when none does."""
        for serializer in self._serializers:
            if serializer.accepts(value):
                return serializer
        raise Unserializable(
            f"no serializer accepts a value of type {python_type(value)}{_why(value)} (registered: "
            f"{', '.join(self.names()) or 'none'}); convert it to one of those types or register a serializer "
            "with loopml.pipelines.serializers.register_serializer"
        )

    def by_name(self, name: str) -> Serializer:
        """The serializer registered as `name`; `NotFound` otherwise."""
        for serializer in self._serializers:
            if serializer.name == name:
                return serializer
        raise NotFound(f"no serializer named {name!r} is registered (registered: {', '.join(self.names())})")

    def names(self) -> list[str]:
        """`name@version` of every serializer, in the order they are tried."""
        return [f"{s.name}@{s.version}" for s in self._serializers]


def _why(value: Any) -> str:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):  # np.mean() and friends return these
        return " (a numpy scalar: return value.item() or numpy.asarray(value))"
    if getattr(getattr(value, "dtype", None), "hasobject", False):
        return " holding Python objects, which would need pickle (LoopML never uses it)"
    return ""


def _check(serializer: Any) -> None:
    if not isinstance(serializer, Serializer):
        raise InvalidInput(f"a serializer must subclass Serializer, got {python_type(serializer)}")
    name, version = getattr(serializer, "name", None), getattr(serializer, "version", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{python_type(serializer)}.name must be letters, digits, '_', '.' or '-', got {name!r}"
        )
    if type(version) is not int or version < 0:
        raise InvalidInput(f"{python_type(serializer)}.version must be an integer >= 0, got {version!r}")
    if not str(getattr(serializer, "extension", "")).startswith("."):
        raise InvalidInput(f"{python_type(serializer)}.extension must start with '.', e.g. '.bin'")


@dataclass(frozen=True)
class Stored:
    """A serialized output: the bytes to store, the value's canonical hash and how to read it back."""

    data: bytes
    content_hash: str
    serializer: str  # name@version
    python_type: str  # module.qualname of the value


def python_type(value: Any) -> str:
    """`module.qualname` of the type of `value`."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def serialize(value: Any, registry: SerializerRegistry | None = None) -> Stored:
    """Store `value` with the first serializer of `registry` (the default registry) that accepts it."""
    serializer = (default_registry if registry is None else registry).for_value(value)
    data = serializer.dump(value)
    label = f"{serializer.name}@{serializer.version}"
    return Stored(data, serializer.content_hash(value, data), label, python_type(value))


def deserialize(data: bytes, serializer: str, registry: SerializerRegistry | None = None) -> Any:
    """The value stored as `data` by `serializer` ("name@version"), which must be registered at that version."""
    match = _LABEL.match(serializer)
    if match is None:
        raise InvalidInput(f"a serializer is given as name@version, e.g. 'json@1', got {serializer!r}")
    found = (default_registry if registry is None else registry).by_name(match["name"])
    if found.version != int(match["version"]):
        raise InvalidInput(
            f"the artifact was written by {serializer} but {found.name}@{found.version} is registered, which "
            "cannot read it; re-run the step that made it, or register a serializer that reads that version"
        )
    return found.load(data)


class JsonSerializer(Serializer):
    """None, bool, int, float, str and lists, tuples and str-keyed dicts of them, round-tripping exactly.

    Plain JSON, readable by eye; what JSON loses is tagged: `{"__loopml__": "tuple", "items": [...]}`,
    `{"__loopml__": "float", "value": "nan"}`, and a dict that has a `__loopml__` key is wrapped as
    `{"__loopml__": "dict", "items": {...}}`. The content hash is over the encoding with sorted keys.
    """

    name = "json"
    version = 1
    extension = ".json"

    def accepts(self, value: Any) -> bool:
        """True for JSON-like values nested at most `MAX_JSON_DEPTH` containers deep."""
        return _json_ok(value, 0)

    def dump(self, value: Any) -> bytes:
        """UTF-8 JSON in the value's own key order."""
        encoded = _json_encode(value)
        try:
            return (json.dumps(encoded, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate only survives as an ASCII escape
            return (json.dumps(encoded, allow_nan=False) + "\n").encode("ascii")

    def load(self, data: bytes) -> Any:
        """The value, with tuples, non-finite floats and tag-keyed dicts restored."""
        try:
            return _json_decode(json.loads(data))
        except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as error:
            raise InvalidInput(f"not a LoopML json artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the encoding with sorted keys: dict order does not matter, True/1/1.0 stay apart."""
        canonical = json.dumps(_json_encode(value), allow_nan=False, sort_keys=True, separators=(",", ":"))
        return hash_bytes(canonical.encode("ascii"))


def _json_ok(value: Any, depth: int) -> bool:
    # Exact types: a subclass (an IntEnum, an OrderedDict, numpy.float64) would come back as its base.
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return True
    if kind not in (list, tuple, dict) or depth >= MAX_JSON_DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and _json_ok(v, depth + 1) for k, v in value.items())
    return all(_json_ok(item, depth + 1) for item in value)


def _json_encode(value: Any) -> Any:
    kind = type(value)
    if kind is float and not math.isfinite(value):
        return {_TAG: "float", "value": repr(value)}
    if kind is tuple:
        return {_TAG: "tuple", "items": [_json_encode(item) for item in value]}
    if kind is list:
        return [_json_encode(item) for item in value]
    if kind is dict:
        items = {key: _json_encode(item) for key, item in value.items()}
        return {_TAG: "dict", "items": items} if _TAG in value else items
    return value


def _json_decode(node: Any) -> Any:
    if type(node) is list:
        return [_json_decode(item) for item in node]
    if type(node) is not dict:
        return node
    if _TAG not in node:
        return {key: _json_decode(item) for key, item in node.items()}
    tag = node[_TAG]
    if tag == "tuple":
        return tuple(_json_decode(item) for item in node["items"])
    if tag == "float" and node["value"] in ("nan", "inf", "-inf"):
        return float(node["value"])
    if tag == "dict":
        return {key: _json_decode(item) for key, item in node["items"].items()}
    raise ValueError(f"unknown tag {tag!r}")


class NpySerializer(Serializer):
    """numpy arrays as `.npy` files, never pickled: object arrays are refused."""

    name = "npy"
    version = 1
    extension = ".npy"

    def accepts(self, value: Any) -> bool:
        """True for a plain ndarray (not a subclass such as a masked array) with no Python objects in it."""
        np = sys.modules.get("numpy")
        return np is not None and type(value) is np.ndarray and not value.dtype.hasobject

    def dump(self, value: Any) -> bytes:
        """The `.npy` file, keeping the memory order (a Fortran array comes back Fortran-ordered)."""
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()

    def load(self, data: bytes) -> Any:
        """The array; pickled content is refused."""
        import numpy as np

        if not data.startswith(b"\x93NUMPY"):  # np.load would also open a zip (.npz)
            raise InvalidInput("not an .npy artifact: the magic bytes are missing")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InvalidInput(f"not a readable .npy artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of dtype, shape and the values in C order, whatever the memory layout."""
        return canonical_hash(value)


class ParquetSerializer(Serializer):
    """pandas DataFrames and Series and pyarrow Tables as Parquet (zstd), written by pyarrow.

    The index, column names, categorical/datetime/string dtypes and a Series' name come back; which of the three
    types was stored is kept in the schema metadata. Frames holding Python objects Arrow cannot convert are not
    accepted (there is no pickle fallback).
    """

    name = "parquet"
    version = 1
    extension = ".parquet"

    def accepts(self, value: Any) -> bool:
        """True for a pyarrow Table, and a DataFrame or Series (not a subclass) that Arrow can convert."""
        pd, pa = sys.modules.get("pandas"), sys.modules.get("pyarrow")
        if pa is not None and isinstance(value, pa.Table):
            return True
        if pd is None or type(value) not in (pd.DataFrame, pd.Series):
            return False
        if isinstance(value, pd.Series):
            return _json_ok(value.name, 0) and _arrow_converts(value.to_frame())
        return (
            bool(value.columns.is_unique) and _names_round_trip(pd, value.columns) and _arrow_converts(value)
        )

    def dump(self, value: Any) -> bytes:
        """The Parquet file of the value's Arrow table."""
        pa = _pyarrow()
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        try:
            pq.write_table(_to_table(value), sink, compression="zstd")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            raise Unserializable(
                f"cannot write this {python_type(value)} as Parquet: {_first_line(error)}"
            ) from None
        return bytes(sink.getvalue().to_pybytes())

    def load(self, data: bytes) -> Any:
        """A DataFrame, a Series or a Table, as it was stored."""
        pa = _pyarrow()
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as error:
            raise InvalidInput(f"not a readable Parquet artifact: {_first_line(error)}") from None
        metadata = dict(table.schema.metadata or {})
        kind, series_name = metadata.pop(_KIND, b"table"), metadata.pop(_SERIES_NAME, b"null")
        if kind == b"table":
            return table.replace_schema_metadata(metadata or None)
        frame = table.to_pandas()
        if kind == b"dataframe":
            return frame
        if kind != b"series":
            raise InvalidInput(f"not a LoopML Parquet artifact: unknown kind {kind!r}")
        series = frame.iloc[:, 0]
        series.name = _json_decode(json.loads(series_name))
        return series

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the Arrow data and schema, and of the metadata minus the writer's versions."""
        from loopml.data.tables import canonical_digest  # pulls no pandas in: safe to import here

        table = _to_table(value)
        metadata = {}
        for key, raw in (table.schema.metadata or {}).items():
            text = raw.decode("latin-1")
            if key == b"pandas":  # the same frame written by another pyarrow or pandas must hash equal
                described = json.loads(raw)
                described.pop("creator", None)
                described.pop("pandas_version", None)
                text = json.dumps(described, sort_keys=True)
            metadata[key.decode("latin-1")] = text
        canonical = json.dumps(metadata, sort_keys=True).encode()
        return hash_chunks([b"parquet\0", canonical, b"\0", canonical_digest(table).encode()])


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ModuleNotFoundError:
        raise InvalidInput("storing tables needs pyarrow: pip install 'loopml[data]'") from None
    return pyarrow


def _names_round_trip(pd: Any, columns: Any) -> bool:
    """Column names of mixed types (1 and "a") come back as strings, so such frames are not accepted."""
    levels = [columns.get_level_values(i) for i in range(columns.nlevels)]
    return not any("mixed" in pd.api.types.infer_dtype(level, skipna=False) for level in levels)


def _arrow_converts(frame: Any) -> bool:
    """Whether Arrow can convert the object-dtype columns and index levels, the only ones that can fail."""
    try:
        import pyarrow as pa
    except ModuleNotFoundError:
        return True  # accepted, so that dumping says what to install
    index = frame.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    columns = [frame.iloc[:, i] for i in range(frame.shape[1])]
    for values in [*columns, *levels]:
        if values.dtype != object:
            continue
        try:
            pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return False
    return True


def _to_table(value: Any) -> Any:
    pa = _pyarrow()
    if isinstance(value, pa.Table):
        table, extra = value, {_KIND: b"table"}
    else:
        series = isinstance(value, sys.modules["pandas"].Series)
        frame = value.to_frame(name=_SERIES_COLUMN) if series else value
        try:
            table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as error:
            raise Unserializable(
                f"cannot convert this {python_type(value)} to Arrow: {_first_line(error)}"
            ) from None
        extra = {_KIND: b"series" if series else b"dataframe"}
        if series:
            extra[_SERIES_NAME] = json.dumps(_json_encode(value.name)).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class SkopsSerializer(Serializer):
    """scikit-learn estimators (Pipelines and ColumnTransformers included) saved with skops, never pickle.

    Loading trusts only the types whose module starts with one of `TRUSTED_MODULES` or `trusted_modules`, and
    builtins that are classes (not functions such as `eval`); anything else refuses the artifact. Dumping checks
    the same list, so a model that could not be loaded back is refused when it is stored, not later.
    """

    name = "skops"
    version = 1
    extension = ".skops"

    def __init__(self, *, trusted_modules: Sequence[str] = ()) -> None:
        self.trusted_modules = trusted_modules

    def accepts(self, value: Any) -> bool:
        """True for an instance with `get_params` whose class lives in `sklearn`."""
        return (
            not isinstance(value, type)
            and type(value).__module__.startswith("sklearn.")
            and hasattr(value, "get_params")
        )

    def dump(self, value: Any) -> bytes:
        """The skops file; `Unserializable` when skops cannot save it or it names untrusted types."""
        sio = _skops()
        try:
            data = bytes(sio.dumps(value))
        except Exception as error:  # skops raises whatever its dispatch hits; all mean "cannot store"
            raise Unserializable(f"skops cannot save this {python_type(value)}: {error}") from error
        refused = self._refused(sio.get_untrusted_types(data=data))
        if refused:
            raise Unserializable(
                f"this {python_type(value)} holds types LoopML would refuse to load: {', '.join(refused)}; "
                "register SkopsSerializer(trusted_modules=[...]) naming modules you trust"
            )
        return data

    def load(self, data: bytes) -> Any:
        """The estimator, after checking every type the artifact names against the allow-list."""
        sio = _skops()
        try:
            untrusted = sio.get_untrusted_types(data=data)
        except Exception as error:  # a damaged zip or schema raises anything from zipfile to json
            raise InvalidInput(f"not a readable skops artifact: {error}") from None
        refused = self._refused(untrusted)
        if refused:
            raise UntrustedArtifact(
                f"skops artifact refused: it names types outside LoopML's allow-list: {', '.join(refused)}"
            )
        try:
            return sio.loads(data, trusted=untrusted)
        except Exception as error:  # as above: a damaged artifact can fail anywhere in skops' loaders
            raise InvalidInput(f"not a loadable skops artifact: {error}") from None

    def content_hash(self, value: Any, data: bytes) -> str:
        """Hash of the estimator's class, params and fitted state: two dumps of one model hash equal."""
        try:
            return canonical_hash(value)
        except NotCanonical as error:  # correct but never reused: a cache miss, not a wrong hit
            _log.warning("model %s has no canonical hash, hashing its bytes: %s", python_type(value), error)
            return hash_bytes(data)

    def _refused(self, types: Iterable[str]) -> list[str]:
        prefixes = (*TRUSTED_MODULES, *self.trusted_modules)
        return sorted(t for t in types if not (t.startswith(prefixes) or _is_builtin_class(t)))


def _is_builtin_class(name: str) -> bool:
    module, _, attribute = name.partition(".")
    return module == "builtins" and isinstance(getattr(builtins, attribute, None), type)


def _skops() -> Any:
    try:
        import skops.io
    except ModuleNotFoundError:
        raise InvalidInput("storing scikit-learn models needs skops: pip install 'loopml[sklearn]'") from None
    return skops.io


default_registry = SerializerRegistry(
    [JsonSerializer(), NpySerializer(), ParquetSerializer(), SkopsSerializer()]
)


def register_serializer(serializer: Serializer, *, first: bool = True) -> None:
    """Register `serializer` on the default registry, before the built-ins unless `first=False`."""
    default_registry.register(serializer, first=first)
