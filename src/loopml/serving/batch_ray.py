"""Batch scoring on a Ray cluster: `score(ref, "s3://b/in/*.parquet", "s3://b/out/", executor="ray")`.

The driver (this process) resolves all that needs the metadata store: the model version, its signature and
the package to load. Ray Data then reads the Parquet input (a file, a folder or a glob; local or `s3://`),
a pool of actors scores it batch by batch, and Ray Data writes Parquet part files holding the input columns,
`prediction` and, for a classifier, one `proba_<class>` column per class. Each actor loads the model once, from
the shared blob store (workers cannot open the metadata database): the verified ONNX copy when the version
has one, under the same trust rules as local scoring (`loopml.registry.loading.load_from_blobs`). Every batch
is checked against the signature as local scoring does.

Where it differs from local scoring (`loopml.serving.batch`):

- Parquet only, in and out; the output is a folder of part files (and a `_SUCCESS` marker, written last).
- Rejects: without `rejects`, the first row that breaks the signature fails the job (`ScoringFailed`),
  nothing written. With it, each actor sets its bad rows aside (as Parquet parts in a temporary sibling of
  the reject file) and scores the rest; at the end the driver merges them into one file, CSV or Parquet by
  its extension as locally, local or `s3://`, moved into place just before the output (a failed job leaves
  neither). Its columns are the input columns, `_file` and `_reasons` (the same reasons as local scoring
  gives). Ray Data keeps no row number, so instead of local scoring's `_row` a reject carries `_file`, the
  input file it came from (null when the input has a column named `path`, which Ray Data would overwrite);
  pass `id_column` to name rows. Rejected rows are in no particular order.
- Row order is not kept (blocks go to whichever actor is free): match rows on a column, not on position.
- The part files are written into a temporary sibling folder and moved into place at the end, so a failed job
  leaves nothing at the output path. Locally the move is one rename; S3 has no rename, so each part file is
  copied, and `_SUCCESS` comes last: a reader that finds it knows the folder is whole.
- Predictions go to the prediction log (unless `log=False`) from the driver, which reads the written part
  files back chunk by chunk before moving them into place: memory stays bounded, but every row passes
  through this process once more. Their ids are the `id_column` values, else `<run_id>:<n>` with n the
  row's position in the output (part files in name order).
- The run records no input hash (that would read the whole input here); the result's `chunks` and
  `max_chunk_rows` are 0 (Ray Data splits the work).

S3 goes through s3fs with the project's storage options (`LOOPML_S3_ENDPOINT_URL`); AWS keys set in this
process's environment travel with the job, else each worker finds its own (instance role, profile). A
remote cluster cannot reach this machine's files: give it `s3://` data, and a project whose blob store it
reaches (an S3 blob store or a team server).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, LoopMLError, StoreError
from loopml.core.executors import WorkerLost, executor_for
from loopml.core.ray_executor import RayExecutor
from loopml.pipelines.execution import worker_blobs, worker_settings
from loopml.predictions import PredictionBatch, PredictionLog
from loopml.predictions.retention import forget
from loopml.registry.loading import load_from_blobs
from loopml.registry.signature import Signature
from loopml.registry.signature_check import validate
from loopml.serving.batch import (
    PREDICTION,
    Progress,
    ScoreResult,
    ScoringFailed,
    _check_columns,
    _first_line,
    _Job,
)
from loopml.serving.ray_files import Place, RejectFile

if TYPE_CHECKING:
    from loopml.core.settings import Settings
    from loopml.registry.records import ModelVersion
    from loopml.tracking.active_run import ActiveRun
    from loopml.tracking.tracker import Tracker

_PATH = "path"  # the column Ray Data's read_parquet(include_paths=True) adds
# Ray Data's own voice (progress bars, per-job banners, logged tracebacks): off, the job's errors come back
# to the caller as exceptions. The UDF's original exception is kept, so LoopML errors keep their type.
_QUIET = {
    "enable_progress_bars": False,
    "print_on_execution_start": False,
    "raise_original_map_exception": True,
}


def score_on_ray(
    ref: str,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    executor: str,
    chunk_rows: int,
    rejects: str | os.PathLike[str] | None,
    log: bool,
    id_column: str | None,
    strict: bool,
    experiment: str | None,
    progress: Progress | None,
    tracker: Tracker | None,
    workers: int | None,
) -> ScoreResult:
    """`loopml.serving.batch.score(..., executor="ray")`: see the module docstring."""
    from loopml.registry.store import RegistryStore
    from loopml.tracking.tracker import default_tracker

    spec = executor.strip()
    if spec != "ray" and not spec.startswith("ray://"):
        raise InvalidInput(
            f"unknown executor {executor!r}: batch scoring runs on 'local', 'ray' or 'ray://HOST:PORT'"
        )
    cluster = executor_for(spec)  # refuses a malformed address before anything else is looked at
    if not isinstance(cluster, RayExecutor):  # pragma: no cover - executor_for("ray...") is always one
        raise InvalidInput(f"{executor!r} is not a Ray cluster")
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}")
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, got {workers}")
    source, target = Place.of(str(input)), Place.of(str(output))
    opened = tracker or default_tracker()
    version = RegistryStore(opened.stores.db).get_version(ref)
    if not version.signature:
        raise InvalidInput(f"{version.ref} has no signature (register it with sample=...): cannot validate")
    signature = Signature.from_dict(version.signature)
    files = source.parquet_files()
    schema = source.schema(files[0])
    _check_columns(schema.names, signature, source.url, id_column)
    target.check_output(source, files)
    sink = RejectFile.of(str(rejects), source, target, files, _PATH not in schema.names) if rejects else None
    try:
        ray = cluster.connect()
        if not cluster.local_cluster and not (
            source.remote and target.remote and (sink is None or sink.place.remote)
        ):
            raise InvalidInput(
                "a remote Ray cluster cannot read or write this machine's files: give s3:// input, output "
                "and rejects"
            )
        size, cpus = _pool(cluster.max_workers, workers)
        paths = tuple(sys.path) if cluster.local_cluster else ()
        plan = _Plan(worker_settings(opened.settings), version, strict, id_column, paths, sink)
        job = _RayJob(ray, opened, plan, signature, source, target, files, schema, chunk_rows, size, cpus)
        return job.run(ref, spec, log=log, experiment=experiment, progress=progress)
    finally:
        cluster.shutdown()  # stops a cluster only if it started one for this job


def _pool(cluster_cpus: int, workers: int | None) -> tuple[int, float]:
    """Actors, and CPUs for each: one whole CPU stays free for Ray Data's own tasks, else they wait forever.

    Ray Data 2.60 runs the file listing (`ListFiles`, read_parquet's first step) and the streaming repartition
    as tasks of exactly 1 CPU, with no way to ask for less: while the actors hold more than `cluster_cpus - 1`,
    neither ever starts. On a 1-CPU cluster the actors therefore reserve no CPU (they share it with one task
    at a time); the read and write tasks keep their 1 CPU, which is then always free for them too."""
    spare = cluster_cpus - 1.0
    size = workers or max(1, int(spare))
    return size, min(1.0, spare / size)


@dataclass(frozen=True)
class _Plan:
    """What an actor needs, resolved by the driver: no actor opens the metadata database."""

    settings: Settings
    version: ModelVersion
    strict: bool
    id_column: str | None
    # The driver's sys.path, on a cluster on this machine: a python-flavor model's module imports there too.
    paths: tuple[str, ...]
    rejects: RejectFile | None = None  # None: a bad row fails the job


class _Scorer:
    """A Ray Data actor: loads the model once, then checks and scores batch after batch."""

    def __init__(self, plan: _Plan) -> None:
        for path in reversed(plan.paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        self.plan = plan
        self.error: Exception | None = None
        self.job: _Job | None = None
        signature = Signature.from_dict(plan.version.signature or {})
        try:
            # A private folder for the restored package: only this actor reads it, and only now.
            with tempfile.TemporaryDirectory(prefix="loopml-model-") as cache:
                model = load_from_blobs(worker_blobs(plan.settings), plan.version, Path(cache), serving=True)
        except Exception as error:
            # Raised with the first batch: Ray reports a failed constructor as a dead actor, with the error
            # as text; a failed batch comes back as the exception itself.
            self.error = error
            return
        version = plan.version
        self.job = _Job(version.name, version.version, signature, model, plan.strict, plan.id_column, None)

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.error is not None:
            raise self.error
        job = self.job
        assert job is not None
        sink = self.plan.rejects
        files: pa.ChunkedArray | None = None
        if sink is not None and sink.paths:
            files = table.column(_PATH)
            table = table.drop_columns([_PATH])
        frame, reasons = job._typed(table)
        reasons.update(job._bad_rows(frame.drop(index=list(reasons))))
        if reasons:
            if sink is None:
                row, why = min(reasons.items())
                which = ""
                if self.plan.id_column is not None:
                    which = f" ({self.plan.id_column} {table.column(self.plan.id_column)[row].as_py()!r})"
                raise ScoringFailed(
                    f"a row of the input{which} does not match the model signature ({why}); nothing was "
                    "written: fix the input, or pass a reject file (--rejects FILE) to set bad rows aside"
                )
            bad = pa.array(sorted(reasons), pa.int64())
            sink.set_aside(table.take(bad), files.take(bad) if files is not None else None,
                           [reasons[i] for i in bad.to_pylist()])  # fmt: skip
            good = [i for i in range(table.num_rows) if i not in reasons]
            table = table.take(pa.array(good, pa.int64()))
            frame = frame.iloc[good].reset_index(drop=True)
            if not good:
                return table  # no rows: Ray Data writes nothing of it
        inputs = validate(job.signature, frame, strict_levels=job.strict, strict_ranges=job.strict)
        for name, values in job._predict(inputs).items():
            table = table.append_column(name, pa.array(values))
        return table


@dataclass
class _RayJob:
    """One scoring job: the Ray Data pipeline, the run, the prediction log and the output's publication."""

    ray: Any
    tracker: Tracker
    plan: _Plan
    signature: Signature
    source: Place
    target: Place
    files: list[str]
    schema: pa.Schema
    chunk_rows: int
    size: int  # actors
    cpus: float  # CPUs each

    def run(
        self, ref: str, spec: str, *, log: bool, experiment: str | None, progress: Progress | None
    ) -> ScoreResult:
        from loopml.tracking.fluent import active_run, start_run

        version = self.plan.version
        params: dict[str, Any] = {
            "model": version.name, "model_version": version.version, "model_ref": ref, "input": self.source.url,
            "input_files": len(self.files), "output": self.target.url, "chunk_rows": self.chunk_rows,
            "executor": "ray", "ray_workers": self.size,
        }  # fmt: skip
        sink = self.plan.rejects
        if sink is not None:
            params["rejects"] = sink.place.url
        if spec != "ray":
            params["ray_address"] = spec
        temp = self.target.temporary()
        plog = PredictionLog(self.tracker, queue_size=8) if log else None
        try:
            with start_run(
                experiment, f"score {ref}", nested=active_run() is not None, tracker=self.tracker
            ) as run:
                run.set_tags({"loopml.job": "batch_score"})
                run.log_params(params)
                if sink is not None:
                    sink.prepare()
                self._score(temp)
                try:
                    parts = self.target.parts(temp) or [self._write_empty(temp)]
                    scored = self._log(run, parts, plog) if plog is not None else self._count(parts)
                    rejected = sink.merge(self.schema) if sink is not None else 0
                    rows = scored + rejected
                    if progress is not None:
                        progress(rows, rows)
                    run.log_params({"rows": rows, "scored_rows": scored, "rejected_rows": rejected})
                    self._publish(temp, parts)  # last: the files appear only when all else succeeded
                except (OSError, pa.ArrowException) as error:
                    raise StoreError(
                        f"cannot finish writing {self.target.url}: {_first_line(error)}; nothing was written"
                    ) from None
        except BaseException:
            self.target.discard(temp)
            if sink is not None:
                sink.discard()
            if plog is not None:
                plog.close()
                # A failed job leaves no predictions.
                forget(self.tracker, [s.segment_id for s in plog.written])
            raise
        if sink is not None:
            sink.discard()  # the parts folder
        if plog is not None:
            plog.close()
        return ScoreResult(
            version.name, version.version, self.source.url, self.target.url,
            sink.place.url if sink is not None else None, "", rows, scored, rejected, 0, 0, run.run_id,
            plog.written_rows if plog is not None else 0,
        )  # fmt: skip

    def _publish(self, temp: str, parts: list[str]) -> None:
        """The reject file, then the output (its `_SUCCESS` last); the reject file goes if the output fails."""
        sink = self.plan.rejects
        if sink is not None:
            sink.publish()
        try:
            self.target.publish(temp, parts)
        except BaseException:
            if sink is not None:
                sink.unpublish()
            raise

    def _score(self, temp: str) -> None:
        if not self.target.remote:
            Path(temp).parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet() as data:
                sink = self.plan.rejects
                dataset = data.read_parquet(
                    self.files,
                    filesystem=self.source.arrow_fs,
                    partitioning=None,
                    file_extensions=None,
                    include_paths=sink is not None and sink.paths,
                )
                # Ray Data packs small files into blocks of up to 128 MiB, and one block goes to one actor:
                # blocks of a batch each spread the work over the pool.
                dataset = dataset.repartition(target_num_rows_per_block=self.chunk_rows)
                scored = dataset.map_batches(
                    _Scorer,
                    fn_constructor_args=(self.plan,),
                    batch_size=self.chunk_rows,
                    batch_format="pyarrow",
                    compute=data.ActorPoolStrategy(size=self.size),
                    num_cpus=self.cpus,
                    max_restarts=0,  # a lost actor fails the job (nothing written), as a lost worker does
                )
                scored.write_parquet(temp, filesystem=self.target.arrow_fs)
        except Exception as error:
            raise _translated(self.ray, error) from None

    def _write_empty(self, temp: str) -> str:
        """An input without rows still gives a readable output: one empty part with the input's columns."""
        empty = pa.Table.from_batches([], self.schema).append_column(PREDICTION, pa.nulls(0))
        path = f"{temp}/part-empty.parquet"
        self.target.fs.makedirs(temp, exist_ok=True)
        with self.target.fs.open(path, "wb") as stream:
            pq.write_table(empty, stream)
        return path

    def _count(self, parts: list[str]) -> int:
        rows = 0
        for part in parts:
            with self.target.fs.open(part, "rb") as stream:
                rows += pq.ParquetFile(stream).metadata.num_rows
        return rows

    def _log(self, run: ActiveRun, parts: list[str], plog: PredictionLog) -> int:
        """Log the written predictions, `chunk_rows` at a time; returns the rows."""
        version = self.plan.version
        job = _Job(
            version.name, version.version, self.signature, None, self.plan.strict, self.plan.id_column, None
        )
        rows = 0
        for part in parts:
            with self.target.fs.open(part, "rb") as stream:
                for batch in pq.ParquetFile(stream).iter_batches(batch_size=self.chunk_rows):
                    table = pa.Table.from_batches([batch])
                    frame, _ = job._typed(table)
                    inputs = validate(
                        self.signature, frame, strict_levels=job.strict, strict_ranges=job.strict
                    )
                    outputs = {
                        name: table.column(name).to_numpy(zero_copy_only=False)
                        for name in table.column_names
                        if name == PREDICTION or name.startswith("proba_")
                    }
                    ids = (
                        [str(v) for v in table.column(job.id_column).to_pylist()]
                        if job.id_column is not None
                        else [f"{run.run_id}:{rows + i}" for i in range(table.num_rows)]
                    )
                    logged = PredictionBatch(version.name, version.version, "batch", ids, inputs, outputs,
                                             now_ms(), None, "batch")  # fmt: skip
                    if not plog.append(logged):  # the writer is behind: let it catch up, batch jobs can wait
                        plog.flush()
                        plog.append(logged)
                    rows += table.num_rows
        if not plog.flush():
            raise StoreError("the prediction log did not finish writing in time; the job was undone")
        return rows


@contextlib.contextmanager
def _quiet() -> Iterator[Any]:
    """Ray Data settings for one job (see `_QUIET`), its logger and warnings silenced, all put back after."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    with warnings.catch_warnings():
        # Ray Data's deprecations and tuning hints (which appear as the job runs) are not the user's business.
        warnings.simplefilter("ignore")
        data = importlib.import_module("ray.data")
        context = data.DataContext.get_current()
        saved = {name: getattr(context, name) for name in _QUIET}
        for name, value in _QUIET.items():
            setattr(context, name, value)
        logger.setLevel(logging.CRITICAL)
        try:
            yield data
        finally:
            logger.setLevel(level)
            for name, value in saved.items():
                setattr(context, name, value)


def _translated(ray: Any, error: Exception) -> Exception:
    """The error to raise for a failed Ray Data job: a LoopML error from an actor as itself, in one line."""
    cause = getattr(error, "cause", None)  # RayTaskError(X) carries the worker's X
    if isinstance(cause, LoopMLError):
        # Ray Data appends its retry advice to the message; LoopML messages are one line.
        message = _first_line(cause)
        try:
            return type(cause)(message)
        except TypeError:  # a constructor with more arguments
            return LoopMLError(message)
    if isinstance(error, LoopMLError):
        return error
    lost = (ray.exceptions.ActorDiedError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
    if isinstance(error, lost):
        return WorkerLost(f"a Ray worker scoring the input died: {_first_line(error)}; nothing was written")
    what = cause if isinstance(cause, BaseException) else error
    return LoopMLError(
        f"scoring on Ray failed: {type(what).__name__}: {_first_line(what)}; nothing was written"
    )
