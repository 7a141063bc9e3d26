"""MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/...`) and `mlflow/artifacts/list` over LoopML's
content-addressed artifacts.

MLflow's client uploads to, lists and downloads from the paths under the `artifact_uri` this server hands out:

```
<experiment>/<run_id>/artifacts/<path>       a run's artifacts (LoopML run artifacts)
<experiment>/models/<model_id>/artifacts/... an MLflow 3 logged model's files
loopml-models/<version_id>/<path>            a LoopML model version's package (read only)
```
Every path is parsed into one of those and checked (no `..`, no absolute parts); nothing a client sends
becomes a server file path. Bytes are hashed while they arrive and stored once under their digest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from loopml.core.errors import NotFound
from loopml.mlflow.logged_models import LoggedModelStore
from loopml.server.artifacts_api import receive_upload
from loopml.server.fields import Caller, who
from loopml.server.mlflow_api.wire import MlflowError, fields, string
from loopml.tracking.records import Artifact
from loopml.tracking.values import check_artifact_path

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class Location:
    """Where an artifact path points: whose files (`kind` run | logged_model | version), and the path inside."""

    kind: str
    owner: str
    experiment_id: str | None
    inner: str  # "" for the root


def parse_location(path: str) -> Location:
    """The owner and inner path of an MLflow artifact path; `InvalidInput` for anything else."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[0] == "loopml-models":
        return Location("version", parts[1], None, _inner(parts[2:]))
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        return Location("logged_model", parts[2], parts[0], _inner(parts[4:]))
    if len(parts) >= 3 and parts[2] == "artifacts":
        return Location("run", parts[1], parts[0], _inner(parts[3:]))
    raise MlflowError(
        f"artifact path {path[:200]!r} is not under a run (<experiment>/<run>/artifacts/...) or a logged model "
        "(<experiment>/models/<model>/artifacts/...)"
    )


def _inner(parts: Sequence[str]) -> str:
    return check_artifact_path("/".join(parts)) if parts else ""


def files_of(tracker: Tracker, where: Location) -> list[Artifact]:
    """Every file of the location's owner (checked to belong to the experiment the path names)."""
    if where.kind == "run":
        run = tracker.store.get_run(where.owner)
        if run.experiment_id != where.experiment_id:
            raise NotFound(f"run {where.owner} is not in experiment {where.experiment_id}")
        return tracker.store.attachments.list_artifacts(where.owner)
    if where.kind == "logged_model":
        store = LoggedModelStore(tracker.stores.db)
        if store.get(where.owner).experiment_id != where.experiment_id:
            raise NotFound(f"logged model {where.owner} is not in experiment {where.experiment_id}")
        return store.files(where.owner)
    from loopml.registry.store import RegistryStore
    from loopml.storage.blobs.tree import get_tree

    version = RegistryStore(tracker.stores.db).version_by_id(where.owner)
    return [
        Artifact(e.path, e.digest, e.size) for e in get_tree(tracker.blobs, version.package_digest).entries
    ]


def listing(files: Sequence[Artifact], folder: str, *, full_paths: bool) -> list[dict[str, Any]]:
    """The entries directly in `folder` (files with their sizes, then sub-folders), as MLflow's `FileInfo`s:
    names relative to the folder, or to the root with `full_paths`."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, Any]] = {}
    for item in files:
        if not item.path.startswith(prefix):
            continue
        head, slash, _ = item.path[len(prefix) :].partition("/")
        name = f"{prefix}{head}" if full_paths else head
        entries[head] = {"path": name, "is_dir": True} if slash else {"path": name, "is_dir": False,
                                                                       "file_size": item.size}  # fmt: skip
    return [entries[k] for k in sorted(entries)]


def artifact_routes(app: FastAPI, tracker: Tracker, *, max_upload_bytes: int) -> None:
    """Add MLflow's artifact endpoints to `app` (mounted at `/api/2.0`)."""

    @app.put("/mlflow-artifacts/artifacts/{path:path}")
    async def upload(path: str, request: Request) -> Any:
        who(request).require("write")
        where = parse_location(path)
        if where.kind == "version" or not where.inner:
            raise MlflowError(f"cannot upload to {path[:200]!r}: name a file under a run or a logged model")
        await run_in_threadpool(files_of, tracker, where)  # the owner exists, in that experiment
        spool, _, _ = await receive_upload(request, max_upload_bytes)
        try:
            digest, size = await run_in_threadpool(tracker.blobs.put_stream, spool)
        finally:
            spool.close()
        record = Artifact(where.inner, digest, size)
        if where.kind == "run":
            await run_in_threadpool(tracker.store.attachments.add_artifacts, where.owner, [record])
        else:
            await run_in_threadpool(LoggedModelStore(tracker.stores.db).add_files, where.owner, [record])
        return {}

    @app.get("/mlflow-artifacts/artifacts")
    async def list_folder(request: Request) -> Any:
        path = string(await fields(request), "path", required=False) or ""
        try:
            where = parse_location(path)
        except MlflowError:
            who(request).require("read")
            return {}  # above any run: MLflow's server lists nothing there either
        files = await run_in_threadpool(_readable, tracker, who(request), where)
        return {"files": listing(files, where.inner, full_paths=False)} if files else {}

    @app.get("/mlflow-artifacts/artifacts/{path:path}")
    async def download(path: str, request: Request) -> Any:
        where = parse_location(path)
        files = await run_in_threadpool(_readable, tracker, who(request), where)
        found = next((f for f in files if f.path == where.inner), None)
        if found is None:
            raise NotFound(f"no artifact {where.inner!r} there")
        return StreamingResponse(_chunks(tracker, found.digest), media_type="application/octet-stream")

    @app.get("/mlflow/artifacts/list")
    async def list_run(request: Request) -> Any:
        who(request).require("read")
        body = await fields(request)
        run_id = string(body, "run_id", required=False) or string(body, "run_uuid")
        folder = check_artifact_path(body["path"]) if body.get("path") else ""

        def read() -> Any:
            run = tracker.store.get_run(run_id)
            files = tracker.store.attachments.list_artifacts(run_id)
            return {
                "root_uri": f"mlflow-artifacts:/{run.experiment_id}/{run_id}/artifacts",
                "files": listing(files, folder, full_paths=True),
            }

        return await run_in_threadpool(read)


def _readable(tracker: Tracker, caller: Caller, where: Location) -> list[Artifact]:
    """The location's files, if the caller may read them: a model version's with a role on its model (a
    model's reader downloads it with `mlflow.pyfunc.load_model`), the rest with a role in the workspace."""
    if where.kind != "version":
        caller.require("read")
        return files_of(tracker, where)
    from loopml.registry.store import RegistryStore

    try:
        name = RegistryStore(tracker.stores.db).version_by_id(where.owner).name
    except NotFound:
        caller.require("read")
        raise
    caller.require("read", model=name)
    return files_of(tracker, where)


def _chunks(tracker: Tracker, digest: str) -> Iterator[bytes]:
    from loopml.core.hashing import read_chunks

    with tracker.blobs.open(digest) as source:
        yield from read_chunks(source)
