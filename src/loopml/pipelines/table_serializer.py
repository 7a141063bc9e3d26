"""The `parquet` serializer: pandas DataFrames and Series and pyarrow Tables as Parquet files.

One module per built-in serializer, so each format reads on its own; this is the longest, as converting frames
to Arrow tables and back is most of it. pandas and pyarrow are imported only to dump, load or hash a table.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_chunks
from loopml.pipelines.json_serializer import json_decode, json_encode, json_ok
from loopml.pipelines.serializer import Serializer, Unserializable, python_type

_KIND, _SERIES_NAME, _SERIES_COLUMN = b"loopml.kind", b"loopml.series_name", "series"


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
            return json_ok(value.name, 0) and _arrow_converts(value.to_frame())
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
        series.name = json_decode(json.loads(series_name))
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
            extra[_SERIES_NAME] = json.dumps(json_encode(value.name)).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
