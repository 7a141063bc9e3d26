"""`Client`: query and manage runs by id (what the CLI, and later the server and UI, are built on)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, NotFound
from loopml.core.names import check_key, safe_relative_path
from loopml.storage.gc import referenced_digests, sweep
from loopml.tracking.configs import CONFIG_FOLDER, config_diff
from loopml.tracking.metric_log import SeriesBatch, SeriesOverview
from loopml.tracking.records import Artifact, Experiment, Lifecycle, Metric, Run, RunInput, RunStatus
from loopml.tracking.search import RunPage, search_runs
from loopml.tracking.tracker import Tracker, default_tracker
from loopml.tracking.values import metric_step, metric_value, param_forms, tag_value


class Client:
    """Read and manage tracking records of a project. Writes made through it are durable at return."""

    def __init__(self, tracker: Tracker | None = None) -> None:
        self._tracker = tracker

    @property
    def tracker(self) -> Tracker:
        """The project this client talks to (the working directory's, unless given)."""
        if self._tracker is None:
            self._tracker = default_tracker()
        return self._tracker

    def _fresh(self) -> Tracker:
        tracker = self.tracker
        tracker.flush()  # read-your-writes within one process
        return tracker

    # -- experiments ------------------------------------------------------------------------------------

    def create_experiment(self, name: str, description: str | None = None) -> Experiment:
        """A new experiment."""
        return self.tracker.store.create_experiment(name, description)

    def get_experiment(self, experiment: str) -> Experiment:
        """An experiment by id or name."""
        return self.tracker.store.get_experiment(experiment)

    def list_experiments(self) -> list[Experiment]:
        """Active experiments, oldest first."""
        return self.tracker.store.list_experiments()

    # -- runs -------------------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """A run with its params, tags and latest metrics."""
        return self._fresh().store.get_run(run_id)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter: str | None = None,
        *,
        order_by: Sequence[str] | str | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        include_deleted: bool = False,
    ) -> RunPage:
        """Runs matching a filter such as `metrics.auc > 0.9 and params.model = "rf"`."""
        tracker = self._fresh()
        if tracker.remote:  # the server runs the same search over its database
            body = {
                # One experiment may be given bare, not as a list.
                "experiment_ids": [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids,
                "filter": filter,
                "order_by": order_by if order_by is None or isinstance(order_by, str) else list(order_by),
                "max_results": max_results,
                "page_token": page_token,
            }
            runs, token = tracker.store.search(body)  # type: ignore[attr-defined]
            return RunPage(runs, token)
        return search_runs(
            tracker.store,
            experiment_ids,
            filter,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
            include_deleted=include_deleted,
        )

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of a metric, by step."""
        store = self._fresh().store
        store.run_exists(run_id)
        return store.metrics.history(run_id, key)

    def get_metric_overview(self, run_id: str, key: str, max_points: int = 1000) -> SeriesOverview:
        """A metric in at most `max_points` points (bucket means with their range when longer), for charts."""
        store = self._fresh().store
        store.run_exists(run_id)
        if not isinstance(max_points, int) or not 2 <= max_points <= 100_000:
            raise InvalidInput(f"max_points must be an integer from 2 to 100000, got {max_points!r}")
        return store.metrics.overview(run_id, key, max_points)

    def delete_run(self, run_id: str) -> None:
        """Soft-delete a run (restorable until `gc`)."""
        self.tracker.store.set_lifecycle([run_id], Lifecycle.DELETED)

    def restore_run(self, run_id: str) -> None:
        """Undo a soft delete."""
        self.tracker.store.set_lifecycle([run_id], Lifecycle.ACTIVE)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark a run ended with a final status."""
        try:
            final = RunStatus(status)
        except ValueError:
            raise InvalidInput(f"unknown run status {status!r}; use FINISHED, FAILED or KILLED") from None
        self.tracker.store.set_status(run_id, final)

    # -- logging by id (durable) --------------------------------------------------------------------------

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        """Record a param of a run."""
        self.tracker.store.log_params(run_id, {key: param_forms(key, value)})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        """Set a tag of a run."""
        self.tracker.store.set_tags(run_id, {key: tag_value(key, value)})

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        """Append a metric point to a run, committed at return."""
        check_key("metric", key)
        when = now_ms() if timestamp is None else metric_step(key, timestamp, "timestamp")
        point = (metric_value(key, value), metric_step(key, step), when)
        self.tracker.store.run_exists(run_id)
        self.tracker.store.metrics.append({(run_id, key): [point]})

    def log_batch(
        self, run_id: str, metrics: Sequence[Metric] = (), params: dict[str, Any] | None = None
    ) -> None:
        """Params, then metric points, of one run (each part one transaction)."""
        if params:
            self.tracker.store.log_params(run_id, {k: param_forms(k, v) for k, v in params.items()})
        batch: SeriesBatch = {}
        for m in metrics:
            point = (
                metric_value(m.key, m.value),
                metric_step(m.key, m.step),
                metric_step(m.key, m.timestamp, "timestamp"),
            )
            batch.setdefault((run_id, check_key("metric", m.key)), []).append(point)
        if batch:
            self.tracker.store.run_exists(run_id)
            self.tracker.store.metrics.append(batch)

    # -- artifacts ----------------------------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Artifact]:
        """Files logged to a run (under a folder, if given)."""
        return self.tracker.store.attachments.list_artifacts(
            run_id, safe_relative_path(path) if path else None
        )

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] = ".") -> Path:
        """Copy a logged file, or every file under a logged folder, to `dst_path` (verified by hash)."""
        prefix = safe_relative_path(path) if path else ""
        artifacts = self.list_artifacts(run_id, prefix or None)
        if not artifacts:
            raise InvalidInput(f"run {run_id} has no artifact at {path!r}")
        target = Path(dst_path)
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for artifact in artifacts:
            relative = artifact.path[len(base) :] if base else artifact.path
            self.tracker.blobs.get_file(artifact.digest, target / safe_relative_path(relative), verify=True)
        return target / (prefix.rsplit("/", 1)[-1] if prefix else "")

    def get_code_diff(self, run_id: str) -> str | None:
        """The uncommitted change of the working tree the run started from (None if it was clean).

        Apply it on top of the run's commit (`git apply`) to reproduce the code. A diff larger than
        `max_diff_bytes` was stored truncated: that is said in its last line.
        """
        run = self.get_run(run_id)
        if run.git.diff_hash is None:
            return None
        diff, truncated = self.tracker.store.attachments.get_diff(run.git.diff_hash)
        return diff + ("\n# loopml: diff truncated at max_diff_bytes\n" if truncated else "")

    def get_environment(self, run_id: str) -> dict[str, Any]:
        """Python version, platform and installed packages ({name: version}) of the run's process."""
        run = self.get_run(run_id)
        if run.environment_hash is None:
            raise NotFound(f"run {run_id} has no recorded environment (capture_packages was off)")
        return self.tracker.store.attachments.get_environment(run.environment_hash)

    def runs_with_input(self, dataset: str, version: str) -> list[str]:
        """Ids of the runs that read a dataset version (lineage, from data to runs)."""
        return self.tracker.store.attachments.runs_with_input(dataset, version)

    def config_diff(self, old_run_id: str, new_run_id: str) -> dict[str, str]:
        """Unified diffs of the config files two runs logged (`log_config`), by file name; equal files omitted."""
        texts = []
        for run_id in (old_run_id, new_run_id):
            found = self.list_artifacts(run_id, CONFIG_FOLDER)
            texts.append(
                {
                    a.path[len(CONFIG_FOLDER) + 1 :]: self.tracker.blobs.get_bytes(a.digest, verify=True)
                    for a in found
                }
            )
        diffs = {}
        for name in sorted(set(texts[0]) | set(texts[1])):
            old = texts[0].get(name, b"").decode("utf-8", errors="replace")
            new = texts[1].get(name, b"").decode("utf-8", errors="replace")
            text = config_diff(name, old, new, old_run_id[:8], new_run_id[:8])
            if text:
                diffs[name] = text
        return diffs

    def list_inputs(self, run_id: str) -> list[RunInput]:
        """Dataset versions a run read."""
        return self.tracker.store.attachments.list_inputs(run_id)

    # -- housekeeping -------------------------------------------------------------------------------------

    def gc(
        self, *, older_than_ms: int = 0, blob_grace_s: float = 3600.0, dry_run: bool = False
    ) -> GarbageReport:
        """Purge soft-deleted runs and the blobs nothing refers to (with `dry_run`, only say what would go)."""
        tracker = self.tracker
        if tracker.remote:  # the server's own garbage, collected there (admin only)
            found = tracker.store.gc(  # type: ignore[attr-defined]
                older_than_ms=older_than_ms, blob_grace_s=blob_grace_s, dry_run=dry_run
            )
            return GarbageReport(**found)
        purged = tracker.store.purge_deleted(older_than_ms, dry_run=dry_run)
        keep = referenced_digests(tracker.stores.db, tracker.blobs, ignoring_runs=purged if dry_run else ())
        removed = sweep(tracker.blobs, keep, grace_s=blob_grace_s, dry_run=dry_run)
        freed = sum(tracker.blobs.size(d) for d in removed) if dry_run else None
        return GarbageReport(purged, len(removed), freed, dry_run)


@dataclass(frozen=True)
class GarbageReport:
    """What `gc` removed (or, in a dry run, would remove)."""

    purged_runs: list[str]
    removed_blobs: int
    freed_bytes: int | None
    dry_run: bool
