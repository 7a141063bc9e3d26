"""Prediction log segments in the stores: building a segment's table, writing it, listing and reading them.

A segment is ONE Parquet file in the blob store plus ONE `prediction_segments` row. The file is stored first
and the row inserted after, in one transaction: a crash in between leaves at worst an unreferenced blob (which
`loopml gc` removes), never a row naming a missing file.

File columns: `prediction_id`, `time_ms`, `latency_ms`, `route`, then each model input as `in.<column>` and
each output as `out.<name>`. Categorical inputs are stored as their values. `read_predictions` adds the
segment's `version` and `source`.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, Row, select

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput
from loopml.core.ids import new_id
from loopml.predictions.records import (
    INPUT_PREFIX,
    LATENCY_MS,
    OUTPUT_PREFIX,
    PREDICTION_ID,
    ROUTE,
    TIME_MS,
    PredictionBatch,
    Segment,
)
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.lookups import model_id_of
from loopml.storage.stores import Stores

if TYPE_CHECKING:
    import pandas as pd

    from loopml.tracking.tracker import Tracker

BASE_COLUMNS = (PREDICTION_ID, TIME_MS, LATENCY_MS, ROUTE)


def stores_of(project: Tracker | Stores) -> Stores:
    """The stores of a tracker, or the stores themselves."""
    return project if isinstance(project, Stores) else project.stores


# -- building and writing ------------------------------------------------------------------------------------


def segment_table(batches: Sequence[PredictionBatch], inputs: pd.DataFrame) -> pa.Table:
    """The rows of a segment: `batches` in order, `inputs` their input frames joined (after the privacy policy).

    Built once per segment, not per batch: converting a one-row frame to Arrow costs about a millisecond,
    converting ten thousand rows at once about the same.
    """
    rows = [len(b.prediction_ids) for b in batches]
    total = sum(rows)
    if len(inputs) != total:
        raise InvalidInput(f"{total} prediction ids but {len(inputs)} input rows")
    columns: dict[str, Any] = {
        PREDICTION_ID: pa.array([str(i) for b in batches for i in b.prediction_ids], pa.string()),
        TIME_MS: pa.array(np.repeat(np.array([b.time_ms for b in batches], dtype=np.int64), rows)),
        LATENCY_MS: pa.array(
            np.repeat(np.array([np.nan if b.latency_ms is None else b.latency_ms for b in batches]), rows),
            from_pandas=True,  # NaN (no latency given) is stored as null
        ),
        ROUTE: pa.array(np.repeat(np.array([b.route for b in batches], dtype=object), rows), pa.string()),
    }
    frame = pa.Table.from_pandas(inputs.reset_index(drop=True), preserve_index=False)
    for name, column in zip(frame.column_names, frame.columns, strict=True):
        columns[f"{INPUT_PREFIX}{name}"] = _plain(column)
    for name in batches[0].outputs:
        columns[f"{OUTPUT_PREFIX}{name}"] = _output_array(
            np.concatenate([np.asarray(b.outputs[name]) for b in batches])
        )
    return pa.table(columns)


def check_batch(batch: PredictionBatch) -> None:
    """Refuse a batch whose parts disagree on its number of rows (before it joins a segment)."""
    rows = len(batch.prediction_ids)
    if len(batch.inputs) != rows:
        raise InvalidInput(f"{rows} prediction ids but {len(batch.inputs)} input rows")
    for name, values in batch.outputs.items():
        count = len(np.asarray(values))
        if count != rows:
            raise InvalidInput(f"output {name!r} has {count} values for {rows} predictions")


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # Categories become their values: segments written with different category sets then read back alike.
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _output_array(values: Any) -> pa.Array:
    array = np.asarray(values)
    if array.ndim == 1 and array.dtype.kind in "biuf":
        return pa.array(array)
    return pa.array(list(values) if array.ndim != 1 else array.tolist())


def write_segment(
    stores: Stores, table: pa.Table, *, model_id: str, model: str, version: int, route: str, source: str
) -> Segment:
    """Store `table` as one Parquet file, then index it in one transaction; returns the segment record."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    digest = stores.blobs.put_bytes(data)
    times = table.column(TIME_MS)
    segment = Segment(
        segment_id=new_id(),
        model=model,
        version=version,
        route=route,
        source=source,
        digest=digest,
        rows=table.num_rows,
        bytes=len(data),
        start_time=int(pc.min(times).as_py()),
        end_time=int(pc.max(times).as_py()),
        created_time=now_ms(),
    )

    def insert(conn: Connection) -> None:
        conn.execute(
            t.prediction_segments.insert(),
            {
                "segment_id": segment.segment_id,
                "model_id": model_id,
                "version": version,
                "route": route,
                "source": source,
                "blob_digest": digest,
                "rows": segment.rows,
                "bytes": segment.bytes,
                "start_time": segment.start_time,
                "end_time": segment.end_time,
                "created_time": segment.created_time,
            },
        )

    stores.db.transact(insert)
    return segment


# -- reading -------------------------------------------------------------------------------------------------


def segments(
    project: Tracker | Stores,
    model: str,
    *,
    version: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    routes: Collection[str] | None = None,
    source: str | None = None,
) -> list[Segment]:
    """The segments of `model` holding predictions in [start_ms, end_ms), oldest first."""
    s = t.prediction_segments.c
    with stores_of(project).db.read() as conn:
        model_id = model_id_of(conn, model)
        query = select(t.prediction_segments).where(s.model_id == model_id)
        if version is not None:
            query = query.where(s.version == version)
        if start_ms is not None:
            query = query.where(s.end_time >= start_ms)
        if end_ms is not None:
            query = query.where(s.start_time < end_ms)
        if routes is not None:
            query = query.where(s.route.in_(list(routes)))
        if source is not None:
            query = query.where(s.source == source)
        rows = conn.execute(query.order_by(s.start_time, s.created_time, s.segment_id)).all()
    return [_segment(model, row) for row in rows]


def read_predictions(
    project: Tracker | Stores,
    model: str,
    *,
    version: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    routes: Collection[str] | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Every logged prediction of `model` made in [start_ms, end_ms) as one frame, in time order, with the
    segment's `version` and `source` as columns."""
    import pandas as pd

    stores = stores_of(project)
    found = segments(
        stores, model, version=version, start_ms=start_ms, end_ms=end_ms, routes=routes, source=source
    )
    tables = [_read(stores, segment) for segment in found]
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in _EMPTY.items()})
    table = pa.concat_tables(tables, promote_options="permissive")
    times = table.column(TIME_MS)
    keep = None
    if start_ms is not None:
        keep = pc.greater_equal(times, start_ms)
    if end_ms is not None:
        before = pc.less(times, end_ms)
        keep = before if keep is None else pc.and_(keep, before)
    if keep is not None:
        table = table.filter(keep)
    frame: pd.DataFrame = table.to_pandas()
    return frame.sort_values(TIME_MS, kind="stable").reset_index(drop=True)


_EMPTY: Mapping[str, str] = {
    PREDICTION_ID: "object",
    TIME_MS: "int64",
    LATENCY_MS: "float64",
    ROUTE: "object",
    "version": "int64",
    "source": "object",
}


def _read(stores: Stores, segment: Segment) -> pa.Table:
    table = pq.read_table(io.BytesIO(stores.blobs.get_bytes(segment.digest, verify=True)))
    rows = table.num_rows
    table = table.append_column("version", pa.array(np.full(rows, segment.version, dtype=np.int64)))
    return table.append_column("source", pa.array([segment.source] * rows, pa.string()))


def _segment(model: str, row: Row[Any]) -> Segment:
    return Segment(
        segment_id=row.segment_id,
        model=model,
        version=row.version,
        route=row.route,
        source=row.source,
        digest=row.blob_digest,
        rows=row.rows,
        bytes=row.bytes,
        start_time=row.start_time,
        end_time=row.end_time,
        created_time=row.created_time,
    )
