"""Tabular versions: reading CSV / Parquet / JSON lines / DataFrames, a canonical content hash, schema, profile.

pandas and pyarrow are the `data` extra; they are imported here only, when a table is handled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq", ".jsonl", ".ndjson"})
BATCH_ROWS = 256 * 1024


def is_table_file(path: Path) -> bool:
    """True for the file types whose versions also get a schema and a profile."""
    return path.suffix.lower() in TABLE_SUFFIXES


def _arrow() -> Any:
    try:
        import pyarrow
    except ModuleNotFoundError:
        raise InvalidInput("tables need pyarrow and pandas: pip install 'loopml[data]'") from None
    return pyarrow


def batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The rows of a table file in batches, so a large file is never read whole into memory."""
    pa = _arrow()
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20))
            yield from reader
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        else:
            import pyarrow.json as pajson

            yield from pajson.read_json(path).to_batches(max_chunksize=BATCH_ROWS)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
        raise InvalidInput(f"cannot read {path.name} as a table: {_first_line(error)}") from None


def from_frame(frame: Any) -> pa.Table:
    """A pandas DataFrame (or a pyarrow Table) as an Arrow table."""
    pa = _arrow()
    if isinstance(frame, pa.Table):
        return frame
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as error:
        raise InvalidInput(f"cannot store this DataFrame as Parquet: {_first_line(error)}") from None


def canonical_digest(table: pa.Table) -> str:
    """A hash of the table's columns and values that does not depend on how it was built or chunked."""
    pa = _arrow()
    plain = table.replace_schema_metadata(None).combine_chunks()
    sink = _HashingSink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), plain.schema) as writer:
        for batch in plain.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
    return str(sink.hasher.hexdigest())


class _HashingSink:
    """A write-only file that hashes what is written instead of keeping it."""

    def __init__(self) -> None:
        self.hasher = blake3.blake3()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def write_parquet(table: pa.Table, path: Path) -> None:
    """Store a table as Parquet (zstd), the format every tabular version of a DataFrame is kept in."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd")


def schema_of(
    schema: pa.Schema, null_counts: dict[str, int], logical: dict[str, str]
) -> list[dict[str, Any]]:
    """Column name, Arrow type, logical type and nullability, in column order."""
    return [
        {
            "name": field.name,
            "type": str(field.type),
            "logical": logical.get(field.name, "text"),
            "nullable": null_counts.get(field.name, 0) > 0,
        }
        for field in schema
    ]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
