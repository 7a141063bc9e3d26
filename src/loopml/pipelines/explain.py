"""Why a step call ran or was served from the cache: its cache key compared with the previous call's."""

from __future__ import annotations

from dataclasses import dataclass

from loopml.core.errors import NotFound
from loopml.pipelines.cache_key import explain_change
from loopml.pipelines.records import CacheState, StepRecord, StepStatus
from loopml.pipelines.store import PipelineStore


@dataclass(frozen=True)
class Explanation:
    """The verdict for one step call and the reasons behind it, one per line."""

    node: str
    status: StepStatus
    cache: CacheState
    reasons: tuple[str, ...]
    compared_with: str | None = None  # the earlier step run whose key was compared


def explain(store: PipelineStore, run_id: str, node: str) -> Explanation:
    """Explain step call `node` of pipeline run `run_id`."""
    record = store.get_run(run_id)
    try:
        call = record.step(node)
    except KeyError:
        known = ", ".join(s.node for s in record.steps) or "(none)"
        raise NotFound(f"pipeline run {run_id} has no step {node!r}; its steps are: {known}") from None
    reasons = _reasons(store, call, record.pipeline)
    if record.mode == "rerun" and call.status is StepStatus.FINISHED:
        reasons = [f"ran: this run re-runs {record.source_run_id} with caching off"]
    earlier = _earlier_id(store, call, record.pipeline)
    return Explanation(call.node, call.status, call.cache, tuple(reasons), earlier)


def _reasons(store: PipelineStore, call: StepRecord, pipeline: str) -> list[str]:
    if call.status is StepStatus.SKIPPED:
        return [call.error or "not run: a step it depends on failed"]
    if call.cache in (CacheState.OFF, CacheState.UNAVAILABLE):
        return [f"not cached: {call.cache_note}"]
    if call.status is StepStatus.CACHED:
        return [f"cached: its key matches step run {call.cached_from}, whose outputs were reused"]
    earlier = _earlier(store, call, pipeline)
    if earlier is None or earlier.key is None or call.key is None:
        return ["ran: no earlier call of this step has a cache key (first run)"]
    changes = explain_change(earlier.key, call.key)
    if not changes:
        return [
            "ran: an earlier call had the same key, but its outputs were gone (deleted or garbage collected) "
            "or the run had caching off (--no-cache)"
        ]
    return [f"ran: {line}" for line in changes]


def _earlier(store: PipelineStore, call: StepRecord, pipeline: str) -> StepRecord | None:
    if call.started_time is None:
        return None
    return store.previous_call(call.step, call.node, call.started_time, pipeline=pipeline)


def _earlier_id(store: PipelineStore, call: StepRecord, pipeline: str) -> str | None:
    if call.status is StepStatus.CACHED:
        return call.cached_from
    earlier = _earlier(store, call, pipeline) if call.status is StepStatus.FINISHED else None
    return earlier.run_id if earlier is not None else None
