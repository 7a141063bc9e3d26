"""Reading an MLflow tracking server through its REST API (MLflow 2 and 3 servers), with httpx.

Lists: `experiments/search`, `runs/search` (params, tags, metric names), `metrics/get-history` (paged),
`logged-models/search`, `registered-models/search` + `registered-models/get` (aliases) and
`model-versions/search`. Files: a folder under `mlflow-artifacts:` (what `mlflow server` proxies by default)
is listed and downloaded through `mlflow-artifacts/artifacts`; any other artifact root through the server's
own `artifacts/list` + `get-artifact` (runs) or `logged-models/<id>/artifacts` (logged models). Downloads are
streamed into the blob store; every path the server lists is checked to stay inside its folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from loopml.core.errors import Forbidden, InvalidInput, RemoteError, Unauthenticated
from loopml.core.names import safe_relative_path
from loopml.mlflow.source import (
    LOGGED_MODEL_STATUSES,
    MetricPoint,
    SourceExperiment,
    SourceLoggedModel,
    SourceRegisteredModel,
    SourceRun,
    SourceVersion,
    Unreachable,
    model_id_of,
)
from loopml.storage.blobs.store import BlobStore
from loopml.tracking.records import Artifact
from loopml.tracking.values import check_artifact_path

API = "/api/2.0/mlflow"
PROXIED = "mlflow-artifacts:"
PAGE = 1000
HISTORY_PAGE = 25_000  # MLflow's largest metric history page
LOGGED_MODELS_PAGE = 100
_RUN_STATUSES = {"SCHEDULED": "RUNNING"}


def credentials_from_env(environ: Mapping[str, str]) -> dict[str, str | None]:
    """MLflow's client settings for a server's credentials: `MLFLOW_TRACKING_TOKEN` (a bearer token) or
    `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (basic auth)."""
    return {
        "token": environ.get("MLFLOW_TRACKING_TOKEN") or None,
        "username": environ.get("MLFLOW_TRACKING_USERNAME") or None,
        "password": environ.get("MLFLOW_TRACKING_PASSWORD") or None,
    }


class RestTree:
    """A folder on the server: `kind` "proxied" (a path under mlflow-artifacts), "run" (a run id) or
    "logged_model" (a model id)."""

    def __init__(self, source: RestSource, kind: str, root: str) -> None:
        self.source = source
        self.kind = kind
        self.root = root

    def store(self, blobs: BlobStore) -> list[Artifact]:
        """Download every file into the blob store."""
        return [self._download(path, size, blobs) for path, size in self._files("")]

    def _files(self, folder: str) -> Iterator[tuple[str, int | None]]:
        for entry in self._list(folder):
            name = str(entry.get("path") or "")
            # mlflow-artifacts lists names inside the folder; artifacts/list paths from the root.
            path = name if not folder or "/" in name else f"{folder}/{name}"
            if check_artifact_path(path) != path or (folder and not path.startswith(folder + "/")):
                raise InvalidInput(f"the MLflow server listed {name!r} inside {folder!r}; refusing that path")
            if entry.get("is_dir"):
                yield from self._files(path)
            else:
                size = entry.get("file_size")
                yield path, int(size) if size is not None else None

    def _list(self, folder: str) -> list[dict[str, Any]]:
        if self.kind == "proxied":
            where = f"{self.root}/{folder}" if folder else self.root
            return list(self.source.get("/api/2.0/mlflow-artifacts/artifacts", path=where).get("files") or [])
        if self.kind == "run":
            return list(self.source.pages(f"{API}/artifacts/list", "files", run_id=self.root, path=folder))
        listed = self.source.get(
            f"{API}/logged-models/{quote(self.root)}/artifacts/directories",
            **({"artifact_directory_path": folder} if folder else {}),
        )
        return list(listed.get("files") or [])

    def _download(self, path: str, size: int | None, blobs: BlobStore) -> Artifact:
        if self.kind == "proxied":
            url, params = f"/api/2.0/mlflow-artifacts/artifacts/{quote(f'{self.root}/{path}')}", {}
        elif self.kind == "run":
            url, params = "/get-artifact", {"run_id": self.root, "path": path}
        else:
            url = f"/ajax-api/2.0/mlflow/logged-models/{quote(self.root)}/artifacts/files"
            params = {"artifact_file_path": path}
        digest, stored = self.source.download(url, params, blobs)
        if size is not None and stored != size:
            raise RemoteError(
                f"{path}: the MLflow server sent {stored} bytes of {size}; run the import again to resume"
            )
        return Artifact(path, digest, stored)


class RestSource:
    """An MLflow tracking server at `url` (http or https); the first request checks it answers as one."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"not an MLflow server URL: {url!r} (expected http://HOST:PORT)")
        self.uri = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1].lower()}{parts.path.rstrip('/')}"
        self.notes: list[str] = []
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = httpx.BasicAuth(username, password or "") if username and not token else None
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(60, connect=10),
            transport=transport or httpx.HTTPTransport(retries=2),
            follow_redirects=True,  # to presigned object store URLs; httpx drops credentials across origins
        )
        self._probe()

    def _probe(self) -> None:
        try:
            answer = self._http.post(f"{API}/experiments/search", json={"max_results": 1})
        except httpx.TransportError as error:
            self.close()
            raise InvalidInput(f"cannot reach the MLflow server at {self.uri}: {error}") from None
        if answer.status_code == 404:
            self.close()
            raise InvalidInput(f"{self.uri} is not an MLflow tracking server (no {API}/experiments/search)")
        self._check(answer, "POST experiments/search")

    # -- HTTP ---------------------------------------------------------------------------------------------

    def get(self, endpoint: str, /, **params: Any) -> dict[str, Any]:
        """GET a JSON document."""
        return self._json("GET", endpoint, params=params)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body, get a JSON document."""
        return self._json("POST", path, json=body)

    def pages(
        self, endpoint: str, field: str, /, *, body: dict[str, Any] | None = None, **params: Any
    ) -> Iterator[Any]:
        """Every item of `field` over all pages (POST with `body`, else GET with `params`)."""
        token = None
        while True:
            if body is not None:
                page = self.post(endpoint, {**body, **({"page_token": token} if token else {})})
            else:
                page = self.get(endpoint, **params, **({"page_token": token} if token else {}))
            yield from page.get(field) or []
            token = page.get("next_page_token")
            if not token:
                return

    def download(self, path: str, params: dict[str, str], blobs: BlobStore) -> tuple[str, int]:
        """Stream one file into the blob store; (digest, size)."""
        try:
            with self._http.stream("GET", path, params=params) as answer:
                if answer.status_code != 200:
                    answer.read()
                    self._check(answer, f"GET {path}")
                    raise RemoteError(f"{self.uri} answered {answer.status_code} to GET {path}")
                return blobs.put_stream(io.BufferedReader(_Chunks(answer.iter_bytes())))
        except httpx.HTTPError as error:
            raise self._lost(error) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise self._lost(error) from None
        self._check(answer, f"{method} {path}")
        try:
            document = answer.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise RemoteError(f"{self.uri} answered {method} {path} with something that is not a JSON object")
        return document

    def _check(self, answer: httpx.Response, what: str) -> None:
        if answer.status_code == 401:
            raise Unauthenticated(
                f"{self.uri} refused the credentials (set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD)"
            )
        if answer.status_code == 403:
            raise Forbidden(f"{self.uri} does not let these credentials read: {what}")
        if answer.is_error:
            kind = _NotServed if answer.status_code == 404 else RemoteError
            try:
                message = str(answer.json().get("message") or "")
            except ValueError:
                message = answer.text[:200]
            raise kind(f"{self.uri} answered {answer.status_code} to {what}: {message}")

    def _lost(self, error: httpx.HTTPError) -> RemoteError:
        return RemoteError(f"lost the MLflow server {self.uri} ({error}); run the import again to resume")

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- the source interface -------------------------------------------------------------------------------

    def experiments(self) -> list[SourceExperiment]:
        body = {"view_type": "ALL", "max_results": PAGE}
        return [
            SourceExperiment(
                experiment_id=str(e["experiment_id"]),
                name=str(e["name"]),
                lifecycle=str(e.get("lifecycle_stage") or "active"),
                created_time=_int(e.get("creation_time")),
                tags=_pairs(e.get("tags")),
            )
            for e in self.pages(f"{API}/experiments/search", "experiments", body=body)
        ]

    def runs(self, experiment: SourceExperiment) -> Iterator[SourceRun]:
        body = {"experiment_ids": [experiment.experiment_id], "run_view_type": "ALL", "max_results": PAGE}
        for found in self.pages(f"{API}/runs/search", "runs", body=body):
            info, data = found.get("info") or {}, found.get("data") or {}
            tags = _pairs(data.get("tags"))
            status = str(info.get("status") or "FINISHED")
            yield SourceRun(
                run_id=str(info.get("run_id") or info.get("run_uuid")),
                experiment_id=experiment.experiment_id,
                run_name=info.get("run_name") or tags.get("mlflow.runName"),
                status=_RUN_STATUSES.get(status, status),
                start_time=_int(info.get("start_time")),
                end_time=_int(info.get("end_time")),
                lifecycle=str(info.get("lifecycle_stage") or "active"),
                deleted_time=None,
                user=info.get("user_id") or None,
                artifact_uri=str(info.get("artifact_uri") or ""),
                params=_pairs(data.get("params")),
                tags=tags,
                metric_keys=tuple(sorted({str(m["key"]) for m in data.get("metrics") or []})),
            )

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        found = self.pages(
            f"{API}/metrics/get-history",
            "metrics",
            run_id=run.run_id,
            metric_key=key,
            max_results=HISTORY_PAGE,
        )
        return [
            (float(m.get("value", 0.0)), int(m.get("step", 0)), int(m.get("timestamp", 0))) for m in found
        ]

    def run_files(self, run: SourceRun) -> RestTree:
        root = _proxied_path(run.artifact_uri)
        return RestTree(self, "proxied", root) if root is not None else RestTree(self, "run", run.run_id)

    def logged_models(self, experiment: SourceExperiment) -> Iterator[SourceLoggedModel]:
        body = {"experiment_ids": [experiment.experiment_id], "max_results": LOGGED_MODELS_PAGE}
        try:
            found = list(self.pages(f"{API}/logged-models/search", "models", body=body))
        except _NotServed:
            self.notes.append(f"{self.uri} has no logged models (an MLflow 2 server)")
            return
        for model in found:
            info, data = model.get("info") or {}, model.get("data") or {}
            yield SourceLoggedModel(
                model_id=str(info["model_id"]),
                experiment_id=experiment.experiment_id,
                name=str(info.get("name") or info["model_id"]),
                source_run_id=info.get("source_run_id") or None,
                status=LOGGED_MODEL_STATUSES.get(info.get("status") or 0, "PENDING"),
                model_type=info.get("model_type") or None,
                created_time=_int(info.get("creation_timestamp_ms")),
                updated_time=_int(info.get("last_updated_timestamp_ms")),
                artifact_uri=str(info.get("artifact_uri") or ""),
                tags=_pairs(info.get("tags")),
                params=_pairs(data.get("params")),
            )

    def logged_model_files(self, model: SourceLoggedModel) -> RestTree:
        root = _proxied_path(model.artifact_uri)
        return (
            RestTree(self, "proxied", root)
            if root is not None
            else RestTree(self, "logged_model", model.model_id)
        )

    def registered_models(self) -> Iterator[SourceRegisteredModel]:
        for model in self.pages(f"{API}/registered-models/search", "registered_models", max_results=PAGE):
            name = str(model["name"])
            full = self.get(f"{API}/registered-models/get", name=name).get("registered_model") or model
            quoted = name.replace("\\", "\\\\").replace("'", "\\'")
            versions = [
                _version(v)
                for v in self.pages(
                    f"{API}/model-versions/search",
                    "model_versions",
                    filter=f"name='{quoted}'",
                    max_results=PAGE,
                )
            ]
            yield SourceRegisteredModel(
                name=name,
                description=full.get("description") or None,
                created_time=_int(full.get("creation_timestamp")),
                tags=_pairs(full.get("tags")),
                aliases={str(a["alias"]): int(a["version"]) for a in full.get("aliases") or []},
                versions=tuple(sorted(versions, key=lambda v: v.version)),
            )

    def version_files(self, version: SourceVersion) -> RestTree:
        uri = self.get(
            f"{API}/model-versions/get-download-uri", name=version.name, version=str(version.version)
        )
        root = _proxied_path(str(uri.get("artifact_uri") or ""))
        if root is None:
            raise Unreachable(f"its files are at {uri.get('artifact_uri')}, which the server does not serve")
        return RestTree(self, "proxied", root)


class _NotServed(RemoteError):
    """The server answered 404: an endpoint it does not have (an older MLflow) or a thing it does not hold."""


class _Chunks(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (an HTTP body), for `BlobStore.put_stream`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        count = min(len(buffer), len(self._rest))
        buffer[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


def _version(found: dict[str, Any]) -> SourceVersion:
    source = found.get("source") or None
    return SourceVersion(
        name=str(found["name"]),
        version=int(found["version"]),
        created_time=_int(found.get("creation_timestamp")),
        user=found.get("user_id") or None,
        description=found.get("description") or None,
        source=source,
        run_id=found.get("run_id") or None,
        model_id=found.get("model_id") or model_id_of(source),
        storage_location=None,
        tags=_pairs(found.get("tags")),
    )


def _proxied_path(uri: str) -> str | None:
    """The path under the server's artifact store of an `mlflow-artifacts:` URI, else None."""
    if not uri.startswith(PROXIED):
        return None
    path = urlsplit(uri).path.strip("/")
    return safe_relative_path(path) if path else None


def _pairs(items: Any) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items or []}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
