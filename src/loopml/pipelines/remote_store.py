"""Pipeline runs and step calls against a team server: `PipelineStore`'s methods over HTTP.

`@loopml.pipeline` with `LOOPML_TRACKING_URI` set runs its steps where it is called (the data and the code are
there) and records through the server: step runs, outputs (blobs uploaded by digest), the step cache (so a
teammate's identical call is served from the cache), and the pipeline run's record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from loopml.pipelines.records import CacheState, OutputRef, PipelineRunRecord, StepRecord, StepStatus
from loopml.tracking.remote import Http


class RemotePipelineStore:
    """The pipeline records of a team server."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def create_run(
        self,
        run_id: str,
        *,
        pipeline: str,
        params: Mapping[str, Any],
        executor: str,
        mode: str = "run",
        source_run_id: str | None = None,
    ) -> None:
        import json

        body = {
            "run_id": run_id,
            "pipeline": pipeline,
            "params": json.loads(json.dumps(params, sort_keys=True, default=str)),
            "executor": executor,
            "mode": mode,
            "source_run_id": source_run_id,
        }
        self.http.call("POST", "/pipeline-runs", body, repeatable=False)

    def record_step(
        self,
        pipeline_run_id: str,
        record: StepRecord,
        *,
        params: Mapping[str, Any] | None = None,
        artifacts: Sequence[tuple[str, str, int]] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        body = {
            "record": step_to_dict(record),
            "params": dict(params or {}),
            "artifacts": [{"path": p, "digest": d, "size": s} for p, d, s in artifacts],
            "tags": dict(tags or {}),
        }
        self.http.call("POST", f"/pipeline-runs/{_part(pipeline_run_id)}/steps", body, repeatable=False)

    def carried_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.http.call("GET", f"/runs/{_part(run_id)}/carried-tags", repeatable=True)["tags"])

    def set_result(self, run_id: str, result: Any) -> None:
        self.http.call("PUT", f"/pipeline-runs/{_part(run_id)}/result", {"result": result}, repeatable=True)

    def cached(self, cache_key: str) -> list[StepRecord]:
        found = self.http.call("GET", f"/pipeline-steps/cached/{_part(cache_key)}", repeatable=True)
        return [step_from_dict(s) for s in found["steps"]]

    def previous_call(
        self, step: str, node: str, before: int, *, pipeline: str | None = None
    ) -> StepRecord | None:
        query = f"?step={_part(step)}&node={_part(node)}&before={before}"
        if pipeline is not None:
            query += f"&pipeline={_part(pipeline)}"
        found = self.http.call("GET", f"/pipeline-steps/previous{query}", repeatable=True)["step"]
        return None if found is None else step_from_dict(found)

    def get_run(self, run_id: str) -> PipelineRunRecord:
        return run_from_dict(self.http.call("GET", f"/pipeline-runs/{_part(run_id)}", repeatable=True))

    def list_runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        query = f"?limit={limit}" + (f"&pipeline={_part(pipeline)}" if pipeline is not None else "")
        found = self.http.call("GET", f"/pipeline-runs{query}", repeatable=True)["runs"]
        return [run_from_dict(r) for r in found]


def step_to_dict(record: StepRecord) -> dict[str, Any]:
    """A step call as JSON (the wire form both sides use)."""
    return {
        "node": record.node,
        "step": record.step,
        "status": record.status.value,
        "cache": record.cache.value,
        "run_id": record.run_id,
        "cache_note": record.cache_note,
        "cache_key": record.cache_key,
        "key": record.key,
        "cached_from": record.cached_from,
        "upstream": list(record.upstream),
        "outputs": [o.to_dict() for o in record.outputs],
        "attempts": record.attempts,
        "started_time": record.started_time,
        "duration_ms": record.duration_ms,
        "error": record.error,
    }


def step_from_dict(data: dict[str, Any]) -> StepRecord:
    """The inverse of `step_to_dict` (the server checks the fields before it calls this)."""
    return StepRecord(
        node=data["node"],
        step=data["step"],
        status=StepStatus(data["status"]),
        cache=CacheState(data["cache"]),
        run_id=data.get("run_id"),
        cache_note=data.get("cache_note"),
        cache_key=data.get("cache_key"),
        key=data.get("key"),
        cached_from=data.get("cached_from"),
        upstream=tuple(data.get("upstream") or ()),
        outputs=tuple(OutputRef.from_dict(o) for o in data.get("outputs") or ()),
        attempts=int(data.get("attempts") or 0),
        started_time=data.get("started_time"),
        duration_ms=data.get("duration_ms"),
        error=data.get("error"),
    )


def run_to_dict(record: PipelineRunRecord) -> dict[str, Any]:
    """A pipeline run as JSON."""
    return {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "params": record.params,
        "executor": record.executor,
        "mode": record.mode,
        "status": record.status,
        "created_time": record.created_time,
        "end_time": record.end_time,
        "source_run_id": record.source_run_id,
        "result": record.result,
        "steps": [step_to_dict(s) for s in record.steps],
    }


def run_from_dict(data: dict[str, Any]) -> PipelineRunRecord:
    """The inverse of `run_to_dict`."""
    return PipelineRunRecord(
        run_id=data["run_id"],
        pipeline=data["pipeline"],
        params=dict(data["params"]),
        executor=data["executor"],
        mode=data["mode"],
        status=data["status"],
        created_time=data["created_time"],
        end_time=data.get("end_time"),
        source_run_id=data.get("source_run_id"),
        result=data.get("result"),
        steps=tuple(step_from_dict(s) for s in data.get("steps") or ()),
    )


def _part(text: str) -> str:
    return quote(text, safe="")
