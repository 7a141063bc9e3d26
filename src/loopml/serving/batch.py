"""Batch scoring: `score("fraud@champion", "in.parquet", "out.parquet")` for CSV or Parquet files of any size.

The input is streamed in chunks of `chunk_rows` rows (pyarrow's Parquet batch iterator and incremental CSV
reader), so memory stays constant whatever the file size. Each chunk is checked against the model's
signature; rows that do not match go to the `rejects` file with their reasons, or, without one, the job
stops with `ScoringFailed`. The output holds the input columns as read (CSV columns as text) followed by
`prediction` and, for a classifier, one `proba_<class>` column per class. Output and rejects are written
under temporary names and renamed at the end: a failed job leaves neither behind.

The model version is loaded once (its verified ONNX copy when it has one), the job is recorded as a tracking
run (model, version, input path and BLAKE3 hash, rows, rejected rows), and the predictions go to the
prediction log (route and source "batch") with ids `<run_id>:<row>` or the values of `id_column`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, LoopMLError, StoreError
from loopml.core.hashing import hash_file
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.predictions.retention import forget
from loopml.registry.loading import load_version
from loopml.registry.signature import Signature
from loopml.registry.signature_check import check, validate

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.records import ModelVersion
    from loopml.tracking.tracker import Tracker

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PREDICTION = "prediction"
ROW, REASONS = "_row", "_reasons"  # the reject file's extra columns: input row number (0-based), why
Progress = Callable[[int, int | None], None]  # rows read so far, total rows when known


class ScoringFailed(LoopMLError):
    """Rows of the input do not match the model's signature and no reject file was given; nothing written."""

    code = "scoring_failed"
    http_status = 422
    exit_code = 1


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring job did: rows read, scored and rejected, in how many chunks, and where it went."""

    model: str
    version: int
    input: str
    output: str
    rejects: str | None
    input_hash: str
    rows: int
    scored: int
    rejected: int
    chunks: int
    max_chunk_rows: int
    run_id: str
    logged_rows: int


def score(
    ref: str,
    input: str | os.PathLike[str],  # the CLI's name for it
    output: str | os.PathLike[str],
    *,
    chunk_rows: int = 50_000,
    rejects: str | os.PathLike[str] | None = None,
    log: bool = True,
    id_column: str | None = None,
    strict: bool = False,
    experiment: str | None = None,
    progress: Progress | None = None,
    tracker: Tracker | None = None,
    executor: str | None = None,
    workers: int | None = None,
) -> ScoreResult:
    """Score the file `input` with the model `ref` (NAME, NAME@vN, NAME@ALIAS) into `output`; see the module.

    `rejects`: a CSV/Parquet file for rows that break the signature (else `ScoringFailed` at the first one);
    `log`: write the predictions to the prediction log; `id_column`: input column holding prediction ids;
    `strict`: unseen categories and out-of-range numbers are rejected too; `progress(rows, total)` is called
    after every chunk.

    `executor`: None or "local" (this process), or "ray" / "ray://HOST:PORT": Parquet input (a file, folder
    or glob, local or s3://) scored by Ray Data into a folder of Parquet files by `workers` actors (default:
    the cluster's CPUs less one); the reject file there is merged from the actors' bad rows, with the source
    file (`_file`) instead of the row number (`_row`), and the predictions are logged by reading the output
    back here (`log=False` skips that pass). See `loopml.serving.batch_ray`.
    """
    from loopml.tracking.fluent import active_run, start_run
    from loopml.tracking.tracker import default_tracker

    if executor is not None and executor.strip() != "local":
        from loopml.serving.batch_ray import score_on_ray

        return score_on_ray(
            ref, input, output, executor=executor, chunk_rows=chunk_rows, rejects=rejects, log=log,
            id_column=id_column, strict=strict, experiment=experiment, progress=progress, tracker=tracker,
            workers=workers,
        )  # fmt: skip
    if workers is not None:
        raise InvalidInput("workers is for executor='ray'; the local executor scores in this process")
    if any(str(p).lower().startswith(("s3://", "s3a://")) for p in (input, output)):
        raise InvalidInput(
            "the local executor scores local files; s3:// input and output need executor='ray'"
        )
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}")
    source, target = Path(input), Path(output)
    reject_path = Path(rejects) if rejects is not None else None
    opened = tracker or default_tracker()
    version, signature = _version(opened, ref, source, target, reject_path)
    reader = _Reader(source, chunk_rows)
    try:
        _check_columns(reader.schema.names, signature, source, id_column)
        model = load_version(opened, version, serving=True)
        input_hash = hash_file(source)
        writers = _Writers(target, reject_path, reader.schema)
        plog = PredictionLog(opened, queue_size=8) if log else None
        job = _Job(version.name, version.version, signature, model, strict, id_column, plog)
        params = {"model": version.name, "model_version": version.version, "model_ref": ref,
                  "input": str(source), "input_hash": input_hash, "output": str(target), "chunk_rows": chunk_rows}  # fmt: skip
        try:
            with start_run(
                experiment, f"score {ref}", nested=active_run() is not None, tracker=opened
            ) as run:
                job.run_id = run.run_id
                run.set_tags({"loopml.job": "batch_score"})
                run.log_params(params)
                for chunk in reader:
                    job.chunk(chunk, writers)
                    if progress is not None:
                        progress(job.rows, reader.total)
                if plog is not None and not plog.flush():
                    raise StoreError("the prediction log did not finish writing in time; the job was undone")
                run.log_params({"rows": job.rows, "scored_rows": job.scored, "rejected_rows": job.rejected})
                writers.finish()  # last: the files appear only when everything else has succeeded
        except BaseException:
            writers.discard()
            if plog is not None:
                plog.close()
                forget(opened, [s.segment_id for s in plog.written])  # a failed job leaves no predictions
            raise
    finally:
        reader.close()
    if plog is not None:
        plog.close()
    return ScoreResult(
        version.name, version.version, str(source), str(target), str(reject_path) if reject_path else None,
        input_hash, job.rows, job.scored, job.rejected, job.chunks, job.max_chunk_rows, job.run_id,
        plog.written_rows if plog is not None else 0,
    )  # fmt: skip


def _version(
    tracker: Tracker, ref: str, source: Path, target: Path, rejects: Path | None
) -> tuple[ModelVersion, Signature]:
    """The version `ref` names and its signature, once the file names are known to be usable."""
    from loopml.registry.store import RegistryStore

    for path in (target, rejects):
        if path is not None:
            _format(path)
            if path.resolve() == source.resolve():
                raise InvalidInput(f"{path} is the input file; write the output somewhere else")
    if target == rejects:
        raise InvalidInput("the output and the reject file must be two different files")
    version = RegistryStore(tracker.stores.db).get_version(ref)
    if not version.signature:
        raise InvalidInput(f"{version.ref} has no signature (register it with sample=...): cannot validate")
    return version, Signature.from_dict(version.signature)


def _check_columns(names: list[str], signature: Signature, source: str | Path, id_column: str | None) -> None:
    missing = [c for c in signature.column_names if c not in names]
    if missing:
        raise InvalidInput(f"{source} lacks the model's input column(s) {missing}; it has {names}")
    if id_column is not None and id_column not in names:
        raise InvalidInput(f"{source} has no id column {id_column!r}")
    taken = [c for c in names if c == PREDICTION or c.startswith("proba_")]
    if taken:
        raise InvalidInput(f"{source} already has the output column(s) {taken}; rename or drop them")


def _format(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(f"{path}: unsupported file type {path.suffix!r}; use .csv, .parquet or .pq")
    return found


class _Reader:
    """The input as chunks of exactly `chunk_rows` rows (the last may be shorter); CSV columns as text."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.kind = _format(path)
        self.chunk_rows = chunk_rows
        self.total: int | None = None
        self._parquet: pq.ParquetFile | None = None
        if not path.is_file():
            raise InvalidInput(f"input file {path} does not exist")
        self.path = path
        try:
            if self.kind == "parquet":
                self._parquet = pq.ParquetFile(path)
                self.schema = self._parquet.schema_arrow
                self.total = self._parquet.metadata.num_rows
            else:  # text in, text out: no type guessed from the first block can fail on a later one
                with pacsv.open_csv(path) as probe:
                    names = probe.schema.names
                self.schema = pa.schema([(n, pa.string()) for n in names])
        except (pa.ArrowException, OSError) as error:
            raise InvalidInput(
                f"{path} is not a readable {self.kind.upper()} file: {_first_line(error)}"
            ) from None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        if self._parquet is not None:
            yield from self._parquet.iter_batches(batch_size=self.chunk_rows)
            return
        options = pacsv.ConvertOptions(column_types=self.schema, strings_can_be_null=True)
        with pacsv.open_csv(self.path, convert_options=options) as stream:
            yield from stream

    def __iter__(self) -> Iterator[pa.Table]:
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            for batch in self._batches():
                pending.append(batch)
                held += batch.num_rows
                while held >= self.chunk_rows:
                    table = pa.Table.from_batches(pending, self.schema)
                    yield table.slice(0, self.chunk_rows)
                    rest = table.slice(self.chunk_rows)
                    pending, held = rest.to_batches(), rest.num_rows
        except (pa.ArrowException, OSError) as error:
            raise InvalidInput(f"{self.path} cannot be read past a point: {_first_line(error)}") from None
        if held:
            yield pa.Table.from_batches(pending, self.schema)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


@dataclass
class _Job:
    """Scores chunk after chunk and counts what happened."""

    model_name: str
    version: int
    signature: Signature
    model: Any
    strict: bool
    id_column: str | None
    plog: PredictionLog | None
    run_id: str = ""
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    chunks: int = 0
    max_chunk_rows: int = 0

    def chunk(self, table: pa.Table, writers: _Writers) -> None:
        first = self.rows
        self.rows += table.num_rows
        self.chunks += 1
        self.max_chunk_rows = max(self.max_chunk_rows, table.num_rows)
        frame, reasons = self._typed(table)
        reasons.update(self._bad_rows(frame.drop(index=list(reasons))))
        if reasons:
            if writers.rejects is None:
                row, why = min(reasons.items())
                raise ScoringFailed(
                    f"row {first + row} of the input does not match the model signature ({why}); nothing "
                    "was written: fix the input or pass a reject file (--rejects FILE) to set bad rows aside"
                )
            bad = sorted(reasons)
            writers.reject(table.take(bad), [first + i for i in bad], [reasons[i] for i in bad])
            self.rejected += len(bad)
        good = np.setdiff1d(
            np.arange(table.num_rows), np.fromiter(reasons, dtype=np.int64, count=len(reasons))
        )
        if not len(good):
            return
        inputs = validate(self.signature, frame.iloc[good].reset_index(drop=True), strict_levels=self.strict,
                          strict_ranges=self.strict)  # fmt: skip
        outputs = self._predict(inputs)
        writers.write(table.take(good), outputs)
        self.scored += len(good)
        if self.plog is not None:
            ids = (
                [str(v) for v in table.column(self.id_column).take(good).to_pylist()]
                if self.id_column is not None
                else [f"{self.run_id}:{first + int(i)}" for i in good]
            )
            batch = PredictionBatch(self.model_name, self.version, "batch", ids, inputs, outputs, now_ms(),
                                    None, "batch")  # fmt: skip
            if not self.plog.append(batch):  # the writer is behind: let it catch up, batch jobs can wait
                self.plog.flush()
                self.plog.append(batch)

    def _typed(self, table: pa.Table) -> tuple[pd.DataFrame, dict[int, str]]:
        """The signature columns as a frame; CSV text is converted here, rows that do not convert get a reason."""
        import pandas as pd

        frame = table.select(self.signature.column_names).to_pandas()
        reasons: dict[int, str] = {}
        for spec in self.signature.inputs:
            column = frame[spec.name]
            text = column.dtype == object or pd.api.types.is_string_dtype(column.dtype)
            if not text or spec.type in ("string", "category", "datetime"):
                continue  # typed already (Parquet), or the signature check reads text itself
            if spec.type == "boolean":
                words = column.str.strip().str.lower()
                converted = words.map(_BOOLEANS)
            else:
                converted = pd.to_numeric(column, errors="coerce")
            for row in np.flatnonzero(column.notna().to_numpy() & converted.isna().to_numpy()):
                what = "true or false" if spec.type == "boolean" else "a number"
                reasons.setdefault(int(row), f"column {spec.name!r}: {column.iloc[row]!r:.60} is not {what}")
            frame[spec.name] = converted
        return frame, reasons

    def _bad_rows(self, frame: pd.DataFrame) -> dict[int, str]:
        """The rows of `frame` that break the signature, with why; found by halving, so a chunk with few bad
        rows costs few checks."""
        problems = check(self.signature, frame, strict_levels=self.strict, strict_ranges=self.strict)
        if not problems:
            return {}
        if len(frame) == 1:
            row = frame.iloc[0]
            why = [f"column {p.column!r} ({p.problem}): {_value(row, p.column)!r:.60}" for p in problems]
            return {int(frame.index[0]): "; ".join(why)}
        half = len(frame) // 2
        return self._bad_rows(frame.iloc[:half]) | self._bad_rows(frame.iloc[half:])

    def _predict(self, inputs: pd.DataFrame) -> dict[str, Any]:
        outputs: dict[str, Any] = {PREDICTION: np.asarray(self.model.predict(inputs))}
        classes = getattr(self.model, "classes_", None)
        if classes is not None and hasattr(self.model, "predict_proba"):
            proba = np.asarray(self.model.predict_proba(inputs))
            for i, label in enumerate(np.asarray(classes).tolist()):
                outputs[f"proba_{label}"] = proba[:, i]
        return outputs


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class _Writers:
    """The output and reject files, written under temporary names and renamed only by `finish`."""

    def __init__(self, output: Path, rejects: Path | None, schema: pa.Schema) -> None:
        self.output = _Sink(output)
        self.rejects = _Sink(rejects) if rejects is not None else None
        self.schema = schema

    def write(self, rows: pa.Table, outputs: dict[str, Any]) -> None:
        for name, values in outputs.items():
            rows = rows.append_column(name, pa.array(values))
        self.output.write(rows)

    def reject(self, rows: pa.Table, numbers: list[int], reasons: list[str]) -> None:
        assert self.rejects is not None
        rows = rows.append_column(ROW, pa.array(numbers, pa.int64()))
        self.rejects.write(rows.append_column(REASONS, pa.array(reasons, pa.string())))

    def finish(self) -> None:
        empty = pa.Table.from_batches([], self.schema)
        self.output.finish(empty.append_column(PREDICTION, pa.nulls(0)))
        if self.rejects is not None:
            empty = empty.append_column(ROW, pa.array([], pa.int64()))
            self.rejects.finish(empty.append_column(REASONS, pa.array([], pa.string())))

    def discard(self) -> None:
        for sink in (self.output, self.rejects):
            if sink is not None:
                sink.discard()


class _Sink:
    """One CSV or Parquet file written chunk by chunk into a temporary sibling, renamed into place at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = _format(path)
        self.temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._parquet: pq.ParquetWriter | None = None
        self._started = False

    def write(self, table: pa.Table) -> None:
        try:
            if self.kind == "parquet":
                if self._parquet is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._parquet = pq.ParquetWriter(self.temp, table.schema)
                elif table.schema != self._parquet.schema:
                    table = table.cast(self._parquet.schema)  # a column that was all null in the first chunk
                self._parquet.write_table(table)
            else:
                if not self._started:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                table.to_pandas().to_csv(self.temp, mode="a" if self._started else "w", header=not self._started,
                                         index=False)  # fmt: skip
        except (pa.ArrowException, OSError) as error:
            raise InvalidInput(f"cannot write {self.path}: {_first_line(error)}") from None
        self._started = True

    def finish(self, empty: pa.Table) -> None:
        if not self._started:
            self.write(empty)
        if self._parquet is not None:
            self._parquet.close()
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        if self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def _value(row: pd.Series[Any], column: str | None) -> Any:
    value = row.get(column) if column is not None else None
    return value.item() if isinstance(value, np.generic) else value


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
