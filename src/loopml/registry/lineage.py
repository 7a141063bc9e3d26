"""Lineage of a model version: the run it came from, that run's dataset inputs and commit, its metrics,
and the held-out dataset version the pipeline's split step registered for the promotion gates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

EVAL_DATASET_TAG = "loopml.eval.dataset"
EVAL_TARGET_TAG = "loopml.eval.target"


def run_lineage(
    tracker: Tracker, run_id: str | None, eval_dataset: str | None
) -> tuple[dict[str, Any], dict[str, float]]:
    if run_id is None:
        return ({"eval_dataset": eval_dataset} if eval_dataset else {}), {}
    store = tracker.store
    tracker.flush()  # metrics logged just before registering are part of the version's record
    run = store.get_run(run_id)
    inputs = store.attachments.list_inputs(run_id)
    parent = store.get_run(run.parent_run_id) if run.parent_run_id else None
    eval_target = run.tags.get(EVAL_TARGET_TAG) or sibling_tag(tracker, run.parent_run_id, EVAL_TARGET_TAG)
    if eval_dataset is None:
        eval_dataset = run.tags.get(EVAL_DATASET_TAG) or sibling_tag(
            tracker, run.parent_run_id, EVAL_DATASET_TAG
        )
    if not inputs and parent is not None:  # a pipeline step: the pipeline run holds the dataset inputs
        inputs = store.attachments.list_inputs(parent.run_id)
    lineage = {
        "run_id": run_id,
        "pipeline_run_id": parent.run_id if parent is not None else None,
        "git_commit": run.git.commit,
        "git_dirty": run.git.dirty,
        "datasets": [{"name": i.dataset, "version": i.version, "digest": i.digest} for i in inputs],
        "eval_dataset": eval_dataset,
        "eval_target": eval_target,
    }
    return {k: v for k, v in lineage.items() if v is not None}, dict(run.metrics)


def sibling_tag(tracker: Tracker, parent_run_id: str | None, key: str) -> str | None:
    """A tag set on another step run of the same pipeline run (the split step tags its held-out rows)."""
    if parent_run_id is None:
        return None
    from loopml.tracking.client import Client

    runs = (
        Client(tracker)
        .search_runs(filter=f"tags.`loopml.pipeline_run` = '{parent_run_id}'", max_results=1000)
        .runs
    )
    found = [r.tags[key] for r in runs if key in r.tags]
    return found[0] if found else None
