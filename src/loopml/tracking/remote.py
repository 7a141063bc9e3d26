"""Tracking against a LoopML team server: the store surface the fluent API and `Client` use, over HTTP.

`LOOPML_TRACKING_URI=http://server:5000` (with `LOOPML_TOKEN=lml_...`) makes `Tracker` use `RemoteTrackingStore`
instead of the database: `loopml.start_run`, params, tags, buffered metrics, `Client.get_run`, `search_runs`,
`get_metric_history` work unchanged. Metric batches carry an id, so a batch retried after a timeout is written
once. What is not served over HTTP yet (artifacts, datasets, the registry) says so in one line.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loopml.core.errors import (
    Conflict,
    Forbidden,
    InvalidFilter,
    InvalidInput,
    LoopMLError,
    NotFound,
    ParamConflict,
    PathEscapes,
    RemoteError,
    Unauthenticated,
)
from loopml.core.hashing import hash_bytes, hash_file
from loopml.tracking.metric_log import SeriesBatch
from loopml.tracking.records import (
    Artifact,
    Experiment,
    GitInfo,
    Lifecycle,
    Metric,
    Run,
    RunInput,
    RunStatus,
)

ATTEMPTS = 4  # for requests that are safe to repeat
DIRECT_MIN_BYTES = 8 << 20  # blobs this large go straight to the server's object store when it signs URLs
BATCH_POINTS = 20_000  # metric points per request: ~2 MB of JSON, well inside the server's limit for batches
MISSING_BATCH = 10_000  # digests per "which blobs are missing" request (the server's limit)

_ERRORS: dict[int, type[LoopMLError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
}


class NotServed:
    """Stands for the local stores when tracking goes to a server: any use says what is not served yet."""

    def __init__(self, uri: str, what: str) -> None:
        self._uri, self._what = uri, what

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput(
            f"{self._what} is not available against a team server yet (LOOPML_TRACKING_URI={self._uri}); "
            "unset LOOPML_TRACKING_URI to use the local project"
        )


class Http:
    """JSON requests to the server with the bearer token; retried only where repeating is harmless."""

    def __init__(self, uri: str, token: str | None) -> None:
        import httpx

        if not uri.startswith(("http://", "https://")):
            raise InvalidInput(f"LOOPML_TRACKING_URI must be an http(s):// URL, got {uri!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.uri = uri.rstrip("/")
        self._client = httpx.Client(base_url=self.uri, headers=headers, timeout=60)

    def call(self, method: str, path: str, body: Any = None, *, repeatable: bool) -> Any:
        import httpx

        for attempt in range(ATTEMPTS if repeatable else 1):
            try:
                answer = self._client.request(method, f"/api/v1{path}", json=body)
            except httpx.TransportError as error:
                if attempt + 1 >= (ATTEMPTS if repeatable else 1):
                    raise RemoteError(f"the team server at {self.uri} did not answer: {error}") from None
                time.sleep(0.2 * 2**attempt)
                continue
            if answer.status_code >= 500 and repeatable and attempt + 1 < ATTEMPTS:
                time.sleep(0.2 * 2**attempt)
                continue
            return _result(answer)
        raise RemoteError(f"the team server at {self.uri} did not answer")  # pragma: no cover

    def exchange(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request, not repeated: the status and the JSON answer, errors included (for callers that turn
        an error's extra fields into their own exception)."""
        import httpx

        try:
            answer = self._client.request(method, f"/api/v1{path}", json=body)
        except httpx.TransportError as error:
            raise RemoteError(f"the team server at {self.uri} did not answer: {error}") from None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"error": answer.text[:500]}

    def raise_for(self, status: int, document: Any) -> None:
        """The error `exchange` brought back, as the exception `call` would have raised."""
        _raise(status, document)

    def upload(self, digest: str, content: Any) -> None:
        """PUT a blob (bytes or a binary file, streamed); safe to repeat: it is named by its content."""
        import httpx

        for attempt in range(ATTEMPTS):
            if hasattr(content, "seek"):
                content.seek(0)
            try:
                answer = self._client.put(f"/api/v1/blobs/{digest}", content=content)
            except httpx.TransportError as error:
                if attempt + 1 >= ATTEMPTS:
                    raise RemoteError(f"the team server at {self.uri} did not answer: {error}") from None
                time.sleep(0.2 * 2**attempt)
                continue
            _result(answer)
            return

    def download(self, digest: str, target: Path) -> str:
        """GET a blob into `target` (streamed); returns the digest of what arrived."""
        with self._client.stream("GET", f"/api/v1/blobs/{digest}") as answer:
            return _save(answer, target)

    def put_direct(self, url: str, stream: Any, size: int) -> None:
        """PUT `size` bytes to a presigned URL of the object store (no token: the URL carries the right)."""
        import httpx

        answer = httpx.put(url, content=stream, headers={"Content-Length": str(size)}, timeout=600)
        if answer.status_code >= 300:
            raise RemoteError(
                f"the object store refused the upload: HTTP {answer.status_code} {answer.text[:300]}"
            )

    def download_direct(self, url: str, target: Path) -> str:
        """GET a presigned URL into `target`; returns the digest of what arrived."""
        import httpx

        with httpx.stream("GET", url, timeout=600) as answer:
            if answer.status_code >= 300:
                answer.read()
                raise RemoteError(f"the object store refused the download: HTTP {answer.status_code}")
            return _save(answer, target)

    def close(self) -> None:
        self._client.close()


class RemoteBlobStore:
    """The blob store methods run logging uses, over the server (content-addressed, verified both ways)."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self.root = http.uri  # names the store in per-process caches, as a local store's folder does
        self._direct = True  # until the server says its store signs no URLs

    def _send(self, digest: str, source: Path) -> None:
        """Upload a file: a large one straight to the server's object store when it signs URLs (the server
        checks the hash before the blob takes its name), else through the server."""
        size = source.stat().st_size
        if self._direct and size >= DIRECT_MIN_BYTES:
            offer = self.http.call("POST", "/blobs/uploads", {"size": size}, repeatable=True)
            if offer["url"]:
                with source.open("rb") as stream:
                    self.http.put_direct(offer["url"], stream, size)
                self.http.call(
                    "POST", f"/blobs/uploads/{offer['upload_id']}/commit", {"digest": digest}, repeatable=True
                )
                return
            self._direct = False
        with source.open("rb") as stream:
            self.http.upload(digest, stream)

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        self.http.upload(digest, data)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        source = Path(path)
        digest = hash_file(source)
        self._send(digest, source)
        return digest, source.stat().st_size

    def put_files(self, paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, int]]:
        """Hash every file here, then upload only those the server lacks (a re-add sends no content)."""
        found = [(Path(p), hash_file(Path(p))) for p in paths]
        missing = set(self.missing([digest for _, digest in found]))
        stored = []
        for source, digest in found:
            if digest in missing:
                missing.discard(digest)  # the same content twice in one call is sent once
                self._send(digest, source)
            stored.append((digest, source.stat().st_size))
        return stored

    def missing(self, digests: Sequence[str]) -> list[str]:
        """The digests the server does not hold (asked in batches, each digest once)."""
        unique = list(dict.fromkeys(digests))
        absent: list[str] = []
        for start in range(0, len(unique), MISSING_BATCH):
            body = {"digests": unique[start : start + MISSING_BATCH]}
            absent += self.http.call("POST", "/blobs/missing", body, repeatable=True)["missing"]
        return absent

    def exists(self, digest: str) -> bool:
        return not self.missing([digest])

    def get_file(self, digest: str, destination: str | os.PathLike[str], *, verify: bool = True) -> Path:
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            url = None
            if self._direct:
                url = self.http.call("POST", f"/blobs/{digest}/download-url", {}, repeatable=True)["url"]
                self._direct = url is not None
            arrived = self.http.download_direct(url, temp) if url else self.http.download(digest, temp)
            if verify and arrived != digest:
                raise RemoteError(f"blob {digest} arrived from {self.http.uri} with another content hash")
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
        return target

    def get_bytes(self, digest: str, *, verify: bool = False) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            return self.get_file(digest, Path(folder) / "blob", verify=verify).read_bytes()

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput(f"blob store {name.strip('_')} is not available against a team server yet")


class RemoteAttachments:
    """Artifact records of runs, over the server."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def add_artifacts(self, run_id: str, artifacts: Sequence[Artifact]) -> None:
        if artifacts:
            body = {"artifacts": [{"path": a.path, "digest": a.digest, "size": a.size} for a in artifacts]}
            self.http.call("POST", f"/runs/{run_id}/artifacts", body, repeatable=True)

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[Artifact]:
        query = f"?path={quote(prefix)}" if prefix else ""
        found = self.http.call("GET", f"/runs/{run_id}/artifacts{query}", repeatable=True)["artifacts"]
        return [Artifact(a["path"], a["digest"], a["size"]) for a in found]

    def add_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        if inputs:
            body = {"inputs": [asdict(i) for i in inputs]}
            self.http.call("POST", f"/runs/{run_id}/inputs", body, repeatable=True)

    def list_inputs(self, run_id: str) -> list[RunInput]:
        found = self.http.call("GET", f"/runs/{run_id}/inputs", repeatable=True)["inputs"]
        return [RunInput(**i) for i in found]

    def runs_with_input(self, dataset: str, version: str) -> list[str]:
        query = f"?dataset={quote(dataset, safe='')}&version={quote(version, safe='')}"
        return list(self.http.call("GET", f"/runs-with-input{query}", repeatable=True)["run_ids"])

    def get_environment(self, environment_hash: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.call(
            "GET", f"/environments/{quote(environment_hash)}", repeatable=True
        )
        return answer

    def get_diff(self, diff_hash: str) -> tuple[str, bool]:
        found = self.http.call("GET", f"/diffs/{quote(diff_hash)}", repeatable=True)
        return str(found["diff"]), bool(found["truncated"])

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput(
            f"{name.strip('_')} (environments and code diffs of runs) is not available against a team server yet"
        )


class RemoteMetricLog:
    """Metric points appended through the server, in batches with ids (retries are not duplicated)."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def append(self, batch: SeriesBatch, *, retry_forever: bool = False) -> None:
        by_run: dict[str, list[dict[str, Any]]] = {}
        for (run_id, key), points in batch.items():
            by_run.setdefault(run_id, []).extend(
                {"key": key, "value": _number(value), "step": step, "timestamp": ts}
                for value, step, ts in points
            )
        for run_id, items in by_run.items():
            for start in range(0, len(items), BATCH_POINTS):
                body = {"batch_id": uuid.uuid4().hex, "metrics": items[start : start + BATCH_POINTS]}
                self.http.call("POST", f"/runs/{run_id}/log", body, repeatable=True)

    def history(self, run_id: str, key: str) -> list[Metric]:
        found = self.http.call("GET", f"/runs/{run_id}/metrics/{quote(key, safe='')}", repeatable=True)[
            "metrics"
        ]
        return [Metric(m["key"], float(m["value"]), m["step"], m["timestamp"]) for m in found]

    def forget(self) -> None:
        """Nothing is cached on this side."""


class RemoteTrackingStore:
    """The `TrackingStore` methods the fluent API and `Client` use, served by a team server."""

    def __init__(self, uri: str, token: str | None) -> None:
        self.http = Http(uri, token)
        self.metrics = RemoteMetricLog(self.http)
        self.attachments = RemoteAttachments(self.http)
        self.blobs = RemoteBlobStore(self.http)

    def create_experiment(self, name: str, description: str | None = None) -> Experiment:
        body = {"name": name, "description": description}
        return _experiment(self.http.call("POST", "/experiments", body, repeatable=False))

    def get_experiment(self, experiment_id: str) -> Experiment:
        return _experiment(self.http.call("GET", f"/experiments/{experiment_id}", repeatable=True))

    def list_experiments(self) -> list[Experiment]:
        found = self.http.call("GET", "/experiments", repeatable=True)["experiments"]
        return [_experiment(e) for e in found]

    def experiment_for_run(self, id_or_name: str) -> Experiment:
        try:
            return self.get_experiment(id_or_name)
        except NotFound:
            try:
                return self.create_experiment(id_or_name)
            except Conflict:  # another client created it meanwhile
                return self.get_experiment(id_or_name)

    def create_run(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        note: str | None = None,
        user: str | None = None,
        entry_point: str | None = None,
        git: GitInfo | None = None,
        git_diff: tuple[str, bool] | None = None,
        environment: tuple[str, str, str, dict[str, str]] | None = None,
    ) -> Run:
        # The server records who started the run from the token, and names the environment by its own hash.
        body = {
            "experiment": experiment_id,
            "name": name,
            "parent_run_id": parent_run_id,
            "tags": tags or None,
            "note": note,
            "entry_point": entry_point,
            "git": None if git is None else asdict(git),
            "git_diff": None if git_diff is None else {"diff": git_diff[0], "truncated": git_diff[1]},
            "environment": None
            if environment is None
            else {"python_version": environment[1], "platform": environment[2], "packages": environment[3]},
        }
        return _run(self.http.call("POST", "/runs", body, repeatable=False))

    def get_run(self, run_id: str) -> Run:
        return _run(self.http.call("GET", f"/runs/{run_id}", repeatable=True))

    def run_exists(self, run_id: str) -> None:
        self.get_run(run_id)

    def set_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> None:
        body = {"status": status.value, "error": error}
        self.http.call("POST", f"/runs/{run_id}/end", body, repeatable=True)

    def log_params(self, run_id: str, params: dict[str, tuple[str, str]]) -> None:
        if params:
            values = {key: json.loads(forms[1]) for key, forms in params.items()}
            body = {"batch_id": uuid.uuid4().hex, "params": values}
            self.http.call("POST", f"/runs/{run_id}/log", body, repeatable=True)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if tags:
            body = {"batch_id": uuid.uuid4().hex, "tags": tags}
            self.http.call("POST", f"/runs/{run_id}/log", body, repeatable=True)

    def set_lifecycle(self, run_ids: Sequence[str], lifecycle: Lifecycle) -> None:
        if lifecycle is Lifecycle.ACTIVE:
            self.http.call("POST", "/runs/restore", {"run_ids": list(run_ids)}, repeatable=True)
            return
        for run_id in run_ids:
            self.http.call("DELETE", f"/runs/{run_id}", repeatable=True)

    def set_note(self, run_id: str, note: str) -> None:
        self.http.call("PUT", f"/runs/{run_id}/note", {"note": note}, repeatable=True)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.http.call("DELETE", f"/runs/{run_id}/tags/{quote(key, safe='')}", repeatable=False)

    def gc(self, *, older_than_ms: int, blob_grace_s: float, dry_run: bool) -> dict[str, Any]:
        """The server's garbage collection (admin only); its report."""
        body = {"older_than_ms": older_than_ms, "blob_grace_s": blob_grace_s, "dry_run": dry_run}
        answer: dict[str, Any] = self.http.call("POST", "/gc", body, repeatable=False)
        return answer

    def search(self, body: dict[str, Any]) -> tuple[list[Run], str | None]:
        found = self.http.call("POST", "/runs/search", body, repeatable=True)
        return [_run(r) for r in found["runs"]], found.get("next_page_token")

    def __getattr__(self, name: str) -> Any:
        raise InvalidInput(f"{name.strip('_')} is not available against a team server yet")


def _result(answer: Any) -> Any:
    try:
        document = answer.json()
    except ValueError:
        document = {"error": answer.text[:500]}
    if answer.status_code < 400:
        return document
    _raise(answer.status_code, document)


def _save(answer: Any, target: Path) -> str:
    """Stream an answer's body into `target`; the BLAKE3 digest of what arrived (server errors raised)."""
    import blake3

    if answer.status_code >= 400:
        answer.read()
        _result(answer)
    hasher = blake3.blake3()
    with target.open("wb") as sink:
        for chunk in answer.iter_bytes():
            hasher.update(chunk)
            sink.write(chunk)
    return str(hasher.hexdigest())


def _raise(status: int, document: Any) -> None:
    """The server's error as the same LoopML exception the embedded mode raises (by its code, else status)."""
    message = document.get("error") if isinstance(document, dict) else None
    code = document.get("code") if isinstance(document, dict) else None
    kind = _BY_CODE.get(code) if isinstance(code, str) else None
    if kind is None or status < 400 or status >= 500:
        kind = _ERRORS.get(status, RemoteError)
    raise kind(message or f"the team server answered HTTP {status}")


_BY_CODE: dict[str, type[LoopMLError]] = {
    kind.code: kind
    for kind in (
        InvalidInput,
        InvalidFilter,
        PathEscapes,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        ParamConflict,
    )
}


def _number(value: float) -> float | str:
    import math

    return value if math.isfinite(value) else str(value)  # JSON cannot carry NaN or infinities


def _experiment(data: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=data["experiment_id"],
        name=data["name"],
        lifecycle=Lifecycle(data["lifecycle"]),
        created_time=data["created_time"],
        description=data.get("description"),
    )


def _run(data: dict[str, Any]) -> Run:
    git = data.get("git") or {}
    return Run(
        run_id=data["run_id"],
        experiment_id=data["experiment_id"],
        name=data["name"],
        status=RunStatus(data["status"]),
        start_time=data["start_time"],
        end_time=data.get("end_time"),
        lifecycle=Lifecycle(data["lifecycle"]),
        parent_run_id=data.get("parent_run_id"),
        note=data.get("note"),
        error=data.get("error"),
        user=data.get("user"),
        entry_point=data.get("entry_point"),
        git=GitInfo(**git) if git else GitInfo(),
        environment_hash=data.get("environment_hash"),
        params=dict(data.get("params") or {}),
        tags=dict(data.get("tags") or {}),
        metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
    )
