"""A run's page: what it was (status, times, commit, environment), its params, tags and metric charts, the
dataset versions it read, its artifacts with previews, its child runs, and for a pipeline run the step DAG
with each step's status and log. Artifacts are served raw from `/runs/{id}/artifacts/{path}` in a sandbox.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from loopml.core.errors import LoopMLError, NotFound
from loopml.core.names import safe_relative_path
from loopml.pipelines.store import PipelineStore
from loopml.server.ui import charts
from loopml.server.ui.pages import Pages, caller
from loopml.tracking.records import Artifact, Run
from loopml.tracking.search import search_runs

MAX_CHARTS = 60  # metrics charted on a run page; the rest are listed
PREVIEW_BYTES = 64 * 1024  # of a text artifact shown inline
PREVIEW_ROWS = 20  # of a CSV artifact
INLINE_IMAGE_BYTES = 20 * 2**20
MAX_CHILDREN = 200
MAX_PREVIEWS = 20  # artifacts previewed inline on a run page; the rest are links
MAX_LISTED = 1000  # artifacts listed on a run page
IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TEXTS = {
    ".txt",
    ".log",
    ".json",
    ".yaml",
    ".yml",
    ".md",
    ".py",
    ".toml",
    ".cfg",
    ".ini",
    ".csv",
    ".tsv",
    ".html",
    ".xml",
    ".sql",
    ".sh",
    ".diff",
    ".patch",
    ".rst",
}
# Served raw to a browser: whatever the file holds, it cannot run script in the UI's origin.
RAW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # nothing readable from the browser's cache after signing out
}


def routes(app: FastAPI, pages: Pages) -> None:
    tracker = pages.tracker
    store = tracker.store

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        caller(request)
        run = store.get_run(run_id)
        experiment = store.get_experiment(run.experiment_id)
        keys = store.metric_keys(run_id)
        specs = [
            (
                key,
                charts.line(
                    [(key, store.metrics.overview(run_id, key, charts.MAX_CHART_POINTS))], y_label=key
                ),
            )
            for key in keys[:MAX_CHARTS]
        ]
        artifacts = store.attachments.list_artifacts(run_id)
        children = search_runs(
            store,
            None,
            f'attributes.parent_run_id = "{run_id}"',
            order_by="start_time",
            max_results=MAX_CHILDREN,
        ).runs
        pipeline, dag = _pipeline(tracker.stores.db, run, pages, request)
        return pages.render(
            request,
            "run.html",
            section="experiments",
            run=run,
            experiment=experiment,
            specs=specs,
            unplotted=keys[MAX_CHARTS:],
            artifacts=[
                _preview(tracker, a) if i < MAX_PREVIEWS else {"artifact": a, "kind": "file"}
                for i, a in enumerate(artifacts[:MAX_LISTED])
            ],
            unlisted=max(0, len(artifacts) - MAX_LISTED),
            inputs=store.attachments.list_inputs(run_id),
            children=children,
            pipeline=pipeline,
            dag=dag,
            parent=_parent(store, run),
        )

    @app.get("/runs/{run_id}/artifacts/{path:path}")
    def artifact(request: Request, run_id: str, path: str) -> StreamingResponse:
        caller(request)
        wanted = safe_relative_path(path)
        found = [a for a in store.attachments.list_artifacts(run_id, wanted) if a.path == wanted]
        if not found:
            raise NotFound(f"run {run_id} has no artifact {wanted!r}")
        kind, inline = _content_type(wanted)
        disposition = "inline" if inline else "attachment"
        name = wanted.rsplit("/", 1)[-1]
        headers = {
            **RAW_HEADERS,
            "Content-Disposition": f"{disposition}; filename=\"{_file_name(name)}\"; filename*=UTF-8''{quote(name, safe='')}",
        }
        return StreamingResponse(_chunks(tracker, found[0].digest), media_type=kind, headers=headers)


def _chunks(tracker: Any, digest: str) -> Iterator[bytes]:
    with tracker.blobs.open(digest) as source:
        while chunk := source.read(1 << 20):
            yield chunk


def _content_type(path: str) -> tuple[str, bool]:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix in IMAGES:
        return IMAGES[suffix], True
    if suffix in TEXTS:
        return "text/plain; charset=utf-8", True
    # Anything else (HTML, SVG, XHTML, PDF, ...) is a download the browser never renders in the UI's origin.
    return "application/octet-stream", False


def _file_name(name: str) -> str:
    """An ASCII stand-in for the header's plain `filename` (the exact name goes in `filename*`)."""
    return "".join(c for c in name if (c.isascii() and c.isalnum()) or c in "._-") or "artifact"


def _preview(tracker: Any, artifact: Artifact) -> dict[str, Any]:
    """How the run page shows an artifact: an image, the head of a text, the first rows of a CSV, or a link."""
    kind, _ = _content_type(artifact.path)
    entry: dict[str, Any] = {"artifact": artifact, "kind": "file"}
    if kind.startswith("image/") and artifact.size <= INLINE_IMAGE_BYTES:
        entry["kind"] = "image"
    elif kind.startswith("text/"):
        with tracker.blobs.open(artifact.digest) as source:
            head = source.read(PREVIEW_BYTES).decode("utf-8", errors="replace")
        entry["truncated"] = artifact.size > PREVIEW_BYTES
        if artifact.path.lower().endswith((".csv", ".tsv")):
            lines = head.splitlines()[: PREVIEW_ROWS + 1]
            delimiter = "\t" if artifact.path.lower().endswith(".tsv") else ","
            rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
            entry.update(kind="table", header=rows[0] if rows else [], rows=rows[1:])
        else:
            entry.update(kind="text", text=head)
    return entry


def _parent(store: Any, run: Run) -> Run | None:
    if run.parent_run_id is None:
        return None
    try:
        parent: Run = store.get_run(run.parent_run_id)
    except NotFound:
        return None
    return parent


def _pipeline(db: Any, run: Run, pages: Pages, request: Request) -> tuple[Any, charts.Graph | None]:
    """The pipeline run this run is (its steps as a DAG), if it is one."""
    try:
        record = PipelineStore(db).get_run(run.run_id)
    except LoopMLError:
        return None, None
    from loopml.server.ui.pages import link

    nodes = {
        step.node: charts.Node(
            step.node,
            step.step,
            status=step.status.value,
            href=link(request, f"/runs/{step.run_id}") if step.run_id else "",
            note=f"{step.status.value} · {step.cache.value}"
            + (f" · {step.duration_ms / 1000:.1f}s" if step.duration_ms is not None else ""),
        )
        for step in record.steps
    }
    upstream = {step.node: list(step.upstream) for step in record.steps}
    return record, charts.graph(upstream, nodes)
