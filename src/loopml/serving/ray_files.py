"""Where batch scoring on Ray reads and writes: a local path or an `s3://` URL (`Place`), and the reject file
(`RejectFile`), whose parts the actors write and the driver merges. See `loopml.serving.batch_ray`."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.core.errors import InvalidInput
from loopml.serving.batch import FORMATS, REASONS, _first_line
from loopml.storage.endpoints import storage_options_for

PARQUET = (".parquet", ".pq")
SUCCESS = "_SUCCESS"
FILE = "_file"  # on Ray, a reject's source file (local scoring's `_row` has no equivalent there)
_GLOB = ("*", "?", "[")
_S3 = ("s3://", "s3a://")
_AWS_KEYS = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}


@dataclass(frozen=True)
class Place:
    """A local path or an s3:// URL: its fsspec filesystem, and the path on it (no protocol, no trailing /)."""

    url: str
    fs: Any
    path: str
    remote: bool

    @classmethod
    def of(cls, url: str) -> Place:
        if url.lower().startswith(_S3):
            options = storage_options_for(url)
            options.update({name: os.environ[env] for env, name in _AWS_KEYS.items() if os.environ.get(env)})
            # Parquet is read in ranges; S3-compatible servers (rclone, MinIO) send the whole object's checksum
            # with a range, which botocore would then refuse as a mismatch. Checked when S3 requires it.
            options["config_kwargs"] = {
                **options.get("config_kwargs", {}),
                "response_checksum_validation": "when_required",
            }
            try:
                import fsspec

                fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
            except ImportError as error:
                raise InvalidInput(f"reading {url} needs s3fs: pip install 'loopml[s3]' ({error})") from None
            return cls(url.rstrip("/"), fs, str(path).rstrip("/"), True)
        if "://" in url:
            raise InvalidInput(f"{url}: with --executor ray, input and output are local paths or s3:// URLs")
        from fsspec.implementations.local import LocalFileSystem

        return cls(url, LocalFileSystem(), str(Path(url).expanduser().absolute()), False)

    def shown(self, path: str) -> str:
        return f"s3://{path}" if self.remote else path

    @property
    def arrow_fs(self) -> Any:
        """The filesystem for Ray Data: None (its own) for local paths, s3fs wrapped for pyarrow for S3."""
        if not self.remote:
            return None
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.fs))

    def parquet_files(self) -> list[str]:
        """The Parquet files the input names: itself, those under a folder (not `_`/`.` names), or a glob's."""
        csv = f"{self.url}: CSV input is not supported with --executor ray; convert it to Parquet, or score it with the local executor"  # fmt: skip
        try:
            if any(c in self.path for c in _GLOB):
                found = sorted(
                    p for p, info in self.fs.glob(self.path, detail=True).items() if info["type"] == "file"
                )
                if any(p.lower().endswith(".csv") for p in found):
                    raise InvalidInput(csv)
                files = [p for p in found if p.lower().endswith(PARQUET)]
                if not files:
                    raise InvalidInput(f"no Parquet file matches {self.url}")
                return files
            if self.fs.isdir(self.path):
                found = sorted(self.fs.find(self.path))
                visible = [p for p in found if not _hidden(posixpath.relpath(p, self.path))]
                files = [p for p in visible if p.lower().endswith(PARQUET)]
                if not files and any(p.lower().endswith(".csv") for p in visible):
                    raise InvalidInput(csv)
                if not files:
                    raise InvalidInput(f"{self.url} holds no Parquet file (.parquet or .pq)")
                return files
            if self.path.lower().endswith(".csv"):
                raise InvalidInput(csv)
            if not self.fs.isfile(self.path):
                raise InvalidInput(f"input {self.url} does not exist")
        except OSError as error:
            raise InvalidInput(f"cannot list {self.url}: {_first_line(error)}") from None
        if not self.path.lower().endswith(PARQUET):
            raise InvalidInput(f"{self.url}: unsupported file type; with --executor ray the input is Parquet")
        return [self.path]

    def schema(self, path: str) -> pa.Schema:
        try:
            with self.fs.open(path, "rb") as stream:
                return pq.read_schema(stream)
        except (pa.ArrowException, OSError) as error:
            raise InvalidInput(
                f"{self.shown(path)} is not a readable PARQUET file: {_first_line(error)}"
            ) from None

    def check_output(self, source: Place, files: list[str]) -> None:
        """A new or empty folder that is neither the input nor inside or around it."""
        if self.path.lower().endswith(".csv"):
            raise InvalidInput(f"{self.url}: with --executor ray the output is a folder of Parquet files")
        if self.remote and "/" not in self.path:
            raise InvalidInput(f"{self.url}: give a folder inside the bucket, such as s3://bucket/scored/")
        if self.remote == source.remote and (
            any(_inside(f, self.path) for f in files) or _inside(self.path, source.path.rstrip("/"))
        ):
            raise InvalidInput(f"{self.url} overlaps the input {source.url}; write the output somewhere else")
        try:
            if self.fs.isfile(self.path):
                raise InvalidInput(
                    f"{self.url} is a file; with --executor ray the output is a folder of part files"
                )
            if self.fs.isdir(self.path) and self.fs.ls(self.path):
                raise InvalidInput(f"{self.url} already holds files; give a new or empty folder")
        except OSError as error:
            raise InvalidInput(f"cannot write {self.url}: {_first_line(error)}") from None

    def temporary(self) -> str:
        """A new sibling folder for the part files until the job has succeeded."""
        parent, name = posixpath.split(self.path)
        return f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"

    def parts(self, folder: str) -> list[str]:
        self.fs.invalidate_cache()  # Ray's workers wrote there, not this filesystem object
        if not self.fs.isdir(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(".parquet"))

    def publish(self, temp: str, parts: list[str]) -> None:
        """Move the part files from `temp` into place; `_SUCCESS` last."""
        if not self.remote:  # one rename: the folder appears whole or not at all
            Path(temp, SUCCESS).touch()
            os.replace(temp, self.path)
            return
        copied: list[str] = []
        try:
            for part in parts:
                copied.append(f"{self.path}/{posixpath.basename(part)}")
                self.fs.copy(part, copied[-1])
            self.fs.touch(f"{self.path}/{SUCCESS}")
        except BaseException:
            for path in copied:
                with contextlib.suppress(Exception):
                    self.fs.rm(path)
            raise
        self.discard(temp)

    def discard(self, temp: str) -> None:
        if not self.remote:
            shutil.rmtree(temp, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(temp, recursive=True)


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


@dataclass(frozen=True)
class RejectFile:
    """The reject file: the actors write their bad rows as Parquet parts into `parts` (a temporary sibling
    folder), the driver merges them into `temp` (a temporary sibling file) and moves that into place."""

    place: Place
    kind: str  # "csv" or "parquet"
    parts: str
    temp: str
    paths: bool  # Ray Data adds each row's source file (read_parquet(include_paths=True))
    source_remote: bool

    @classmethod
    def of(cls, url: str, source: Place, target: Place, files: list[str], paths: bool) -> RejectFile:
        place = Place.of(url)
        kind = FORMATS.get(posixpath.splitext(place.path)[1].lower())
        if kind is None:
            raise InvalidInput(f"{place.url}: unsupported reject file type; use .csv, .parquet or .pq")
        if place.remote == target.remote and _inside(place.path, target.path):
            raise InvalidInput(
                f"the reject file {place.url} is inside the output {target.url}; put it elsewhere"
            )
        if place.remote == source.remote and (place.path in files or _inside(place.path, source.path)):
            raise InvalidInput(
                f"the reject file {place.url} overlaps the input {source.url}; put it elsewhere"
            )
        try:
            if place.fs.isdir(place.path):
                raise InvalidInput(f"the reject file {place.url} is a folder; give a .csv or .parquet file")
        except OSError as error:
            raise InvalidInput(f"cannot write {place.url}: {_first_line(error)}") from None
        parent, name = posixpath.split(place.path)
        tag = uuid.uuid4().hex[:8]
        return cls(place, kind, f"{parent}/.{name}.{tag}.parts.tmp", f"{parent}/.{name}.{tag}.tmp", paths,
                   source.remote)  # fmt: skip

    def set_aside(self, rows: pa.Table, files: pa.ChunkedArray | None, reasons: list[str]) -> None:
        """In an actor: one part file with `rows`, their source files and why they were rejected."""
        if files is None:
            named = pa.nulls(rows.num_rows, pa.string())
        else:
            named = pa.array([self._shown(f) for f in files.to_pylist()], pa.string())
        rows = rows.append_column(FILE, named).append_column(REASONS, pa.array(reasons, pa.string()))
        with self.place.fs.open(f"{self.parts}/{uuid.uuid4().hex}.parquet", "wb") as stream:
            pq.write_table(rows, stream)

    def _shown(self, path: str | None) -> str | None:
        return f"s3://{path}" if path is not None and self.source_remote else path

    def prepare(self) -> None:
        if not self.place.remote:
            Path(self.parts).mkdir(parents=True, exist_ok=True)

    def merge(self, schema: pa.Schema) -> int:
        """The actors' parts as one CSV or Parquet file at `temp`, part by part; returns the rows."""
        fs = self.place.fs
        fs.invalidate_cache()  # Ray's workers wrote there, not this filesystem object
        parts = (
            sorted(p for p in fs.find(self.parts) if p.endswith(".parquet")) if fs.isdir(self.parts) else []
        )
        empty = pa.Table.from_batches([], schema).append_column(FILE, pa.array([], pa.string()))
        empty = empty.append_column(REASONS, pa.array([], pa.string()))
        rows = 0
        writer: pq.ParquetWriter | None = None
        with fs.open(self.temp, "wb" if self.kind == "parquet" else "w") as stream:
            for part in parts or [None]:
                if part is None:
                    table = empty
                else:
                    with fs.open(part, "rb") as reading:
                        table = pq.read_table(reading)
                if self.kind == "csv":
                    table.to_pandas().to_csv(stream, header=part == (parts or [None])[0], index=False)
                elif writer is None:
                    writer = pq.ParquetWriter(stream, table.schema)
                    writer.write_table(table)
                else:
                    if table.schema != writer.schema:
                        table = table.cast(writer.schema)  # a column that was all null in the first part
                    writer.write_table(table)
                rows += table.num_rows
            if writer is not None:
                writer.close()
        return rows

    def publish(self) -> None:
        if self.place.remote:
            self.place.fs.mv(self.temp, self.place.path)  # one object copy: it appears whole
        else:
            os.replace(self.temp, self.place.path)

    def unpublish(self) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.place.fs.rm(self.place.path)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.place.fs.rm(self.parts, recursive=True)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.place.fs.rm(self.temp)
