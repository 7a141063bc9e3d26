"""Running a described pipeline: schedule ready steps on an executor, serve cache hits, retry, time out.

The driver (this module) is the only writer of the metadata store; steps run on the executor and hand
back serialized outputs (or, on a cluster, references to outputs they stored and a journal of their tracking
writes, replayed here). A step call is cached when a finished call with the same cache key exists and its
outputs are still in the blob store. Outputs reused from the cache are loaded only when a step that runs
needs them, so a fully cached pipeline reads almost nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopml.core.clock import now_ms
from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.executors import Executor, Mailbox, ThreadExecutor
from loopml.pipelines.early_stopping import TrialStopped
from loopml.pipelines.execution import (
    CallResult,
    StepRun,
    StoredInput,
    call_params,
    execute_step,
    read_only,
    worker_settings,
)
from loopml.pipelines.graph import Graph, Handle, Node, replace_handles
from loopml.pipelines.keys import KeyMaker
from loopml.pipelines.outputs import Output, artifact_path
from loopml.pipelines.records import (
    SINGLE_OUTPUT,
    CacheState,
    OutputRef,
    PipelineRunRecord,
    StepRecord,
    StepStatus,
)
from loopml.pipelines.step import StepFailure
from loopml.pipelines.store import pipeline_store
from loopml.tracking.active_run import MetricHook
from loopml.tracking.journal import Journal, replay
from loopml.tracking.records import Run
from loopml.tracking.tracker import Tracker

Progress = Callable[
    [str, StepRecord | None], None
]  # (node, None) when a call starts; its record when it ends


_CLUSTER_POLL_S = 0.05  # how often a run waiting for the cluster's resources looks again


class StepTimeout(LoopMLError):
    """A step call ran longer than its `timeout_s`."""

    code = "step_timeout"


class PipelineFailed(LoopMLError):
    """A pipeline run ended with failed steps; its record (with tracebacks) is in the store."""

    code = "pipeline_failed"
    exit_code = 1

    def __init__(self, message: str, *, run_id: str, failed: list[str], stopped: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.failed = failed
        self.stopped = stopped  # why an early-stopping scheduler stopped the run, when it did


@dataclass
class _Call:
    node: Node
    run: Run
    key: Any
    cache: CacheState
    cache_note: str | None
    attempt: int = 1
    started_ms: int = field(default_factory=now_ms)
    deadline: float | None = None
    retry_at: float | None = None
    future: cf.Future[CallResult] | None = None
    # Where a call on a cluster posts its journal as it runs, under mailbox_key (None once taken or dropped).
    mailbox: Mailbox | None = None
    mailbox_key: str = ""


class Runner:
    """Runs the nodes of one described pipeline inside an already created pipeline run."""

    def __init__(
        self,
        *,
        tracker: Tracker,
        executor: Executor,
        pipeline_run: str,
        experiment_id: str,
        keys: KeyMaker,
        resume_from: PipelineRunRecord | None = None,
        progress: Progress | None = None,
        use_cache: bool = True,
        metric_hook: MetricHook | None = None,
    ) -> None:
        self.tracker = tracker
        self.store = pipeline_store(tracker)
        self.executor = executor
        self.pipeline_run = pipeline_run
        self.experiment_id = experiment_id
        self.keys = keys
        self.resume_from = resume_from
        self.progress = progress
        self.use_cache = use_cache
        self.outputs: dict[str, dict[str, Output]] = {}
        self.failed: dict[str, str] = {}  # node -> error text
        self.reused: set[str] = set()
        self.abandoned = False  # a timed-out thread still runs: the pool must not be waited for
        self.stopped: str | None = None  # a step was stopped by a sweep's early stopping
        self._in_driver: ThreadExecutor | None = None
        self._in_process = executor.name in ("inline", "threads")
        self._remote = executor.remote_workers
        self.metric_hook = metric_hook
        self._worker_settings = worker_settings(tracker.settings) if self._remote else tracker.settings

    def run(self, graph: Graph) -> None:
        """Run every node of `graph`; failures are recorded (see `failed`), not raised.

        At most `max_workers` calls are submitted at once (on a cluster: as many as its free resources
        allow), so a call's timeout counts from when it starts running, not from when it was queued. An interruption (Ctrl-C) stops what runs and records it.
        """
        if self._remote:
            self._check_shared_blobs()
        waiting = dict(graph.nodes)
        queued: list[_Call] = []
        running: dict[cf.Future[CallResult], _Call] = {}
        delayed: list[_Call] = []
        try:
            while waiting or queued or running or delayed:
                queued += self._start_ready(waiting)
                now = time.monotonic()
                for call in [c for c in delayed if c.retry_at is not None and c.retry_at <= now]:
                    delayed.remove(call)
                    queued.append(call)
                while queued and self._has_room(queued[0], running):
                    running[self._submit(queued[0])] = queued[0]  # popped only once submitted (see _abort)
                    queued.pop(0)
                if not running:
                    if delayed:  # only retries are pending: sleep until the first is due
                        time.sleep(self._wait_time(running, delayed) or 0.0)
                        continue
                    if queued:  # the cluster is busy with other runs' tasks (a sweep's other trials)
                        time.sleep(_CLUSTER_POLL_S)
                        continue
                    for node in waiting.values():  # cannot happen with a described graph; never spin
                        self._skip(node)
                    break
                done, _ = cf.wait(
                    list(running), timeout=self._wait_time(running, delayed), return_when=cf.FIRST_COMPLETED
                )
                for future in done:
                    call = running.pop(future)
                    self._finish(call, future, delayed)
                self._expire(running, delayed)
        except BaseException as error:
            self._abort(running, [*queued, *delayed], error)
            raise

    def _has_room(self, call: _Call, running: dict[cf.Future[CallResult], _Call]) -> bool:
        """Whether to start `call` now. On a cluster: when what it asks for is free, counting every run's tasks,
        so a step's timeout starts when it can run, not while it waits in the cluster's queue."""
        step = call.node.step
        if self._remote and not step.in_driver:
            return self.executor.has_room(step.resource_request)
        return len(running) < max(1, self.executor.max_workers)

    def _check_shared_blobs(self) -> None:
        settings = self.tracker.settings
        local_cluster = bool(getattr(self.executor, "local_cluster", True))
        if not local_cluster and not settings.tracking_uri and self.tracker.blobs.is_local:
            raise InvalidInput(
                f"the workers of a {self.executor.name} cluster on other machines cannot reach the artifact "
                f"folder {settings.blob_url} of this machine: set LOOPML_ARTIFACT_URL=s3://... (or use a team "
                "server through LOOPML_TRACKING_URI)"
            )

    def _start_ready(self, waiting: dict[str, Node]) -> list[_Call]:
        """Skip nodes whose inputs failed; serve or prepare those whose inputs are all there."""
        ready: list[_Call] = []
        for node_id, node in list(waiting.items()):
            if any(u in self.failed for u in node.upstream):
                del waiting[node_id]
                self._skip(node)
            elif all(u in self.outputs for u in node.upstream):
                del waiting[node_id]
                call = self._start(node)
                if call is not None:
                    ready.append(call)
        return ready

    def _abort(
        self, running: dict[cf.Future[CallResult], _Call], pending: list[_Call], error: BaseException
    ) -> None:
        """Stop the calls in flight and record them as failed by the interruption (best effort)."""
        reason = f"interrupted: {type(error).__name__}"
        for future in running:
            if not self.executor.kill(future):
                self.abandoned = True
        for call in running.values():
            with contextlib.suppress(Exception):  # the store may be what failed: the interruption wins
                self._replay(call, CallResult())
        for call in [*running.values(), *pending]:
            record = self._call_record(call, status=StepStatus.FAILED, duration_s=0.0, error=reason)
            try:
                self.store.record_step(self.pipeline_run, record)
            except Exception:  # noqa: S112  (the store may be what failed: the interruption wins)
                continue

    # -- starting a call ---------------------------------------------------------------------------------

    def _start(self, node: Node) -> _Call | None:
        """Serve `node` from the resumed run or the cache, or prepare it to run (returns the call then)."""
        resolved_args = replace_handles(node.args, self._ref)
        resolved_kwargs = replace_handles(node.kwargs, self._ref)
        key, cache, note = self.keys.key_for(node, resolved_args, resolved_kwargs)
        if self.progress:
            self.progress(node.id, None)
        reusable = self._reusable(node, key, cache)
        run = self._child_run(node)
        if reusable is not None:
            self._record_reuse(node, run, key, cache, reusable)
            return None
        return _Call(node=node, run=run, key=key, cache=cache, cache_note=note)

    def _reusable(self, node: Node, key: Any, cache: CacheState) -> StepRecord | None:
        candidates: list[StepRecord] = []
        if self.resume_from is not None and all(u in self.reused for u in node.upstream):
            earlier = next((s for s in self.resume_from.steps if s.node == node.id), None)
            if earlier is not None and earlier.status in (StepStatus.FINISHED, StepStatus.CACHED):
                # The same call only: a param, an input or the code changed since -> it runs again.
                same = (
                    earlier.key == key.record if key is not None else earlier.step == node.step.qualified_name
                )
                if same:
                    candidates.append(earlier)
        if key is not None and cache is CacheState.MISS and self.use_cache:
            candidates += self.store.cached(key.digest)
        wanted = list(node.step.outputs or (SINGLE_OUTPUT,))
        for candidate in candidates:
            if [o.name for o in candidate.outputs] != wanted:
                continue
            if all(self.tracker.blobs.exists(o.digest) for o in candidate.outputs):
                return candidate
        return None

    def _child_run(self, node: Node) -> Run:
        return self.tracker.store.create_run(
            self.experiment_id,
            name=node.id.replace("#", "-"),
            parent_run_id=self.pipeline_run,
            tags={"loopml.step": node.step.qualified_name, "loopml.pipeline_run": self.pipeline_run},
        )

    def _submit(self, call: _Call) -> cf.Future[CallResult]:
        step = call.node.step
        if step.in_driver and not self._in_process:
            future = self._driver_pool().submit(
                execute_step,
                step,
                replace_handles(call.node.args, self._local_value),
                replace_handles(call.node.kwargs, self._local_value),
                context=StepRun(call.run, self.tracker, self.tracker.settings, metric_hook=self.metric_hook),
            )
        else:
            value = self._stored_input if self._remote else self._value
            call.mailbox = self.executor.mailbox() if self._remote else None
            call.mailbox_key = f"{call.run.run_id}/{call.attempt}"
            context = StepRun(
                call.run,
                self.tracker if self._in_process else None,
                self._worker_settings,
                remote=self._remote,
                metric_hook=self.metric_hook,
                mailbox=call.mailbox,
                mailbox_key=call.mailbox_key,
            )
            future = self.executor.submit_with(
                step.resource_request,
                execute_step,
                step,
                replace_handles(call.node.args, value),
                replace_handles(call.node.kwargs, value),
                context=context,
            )
        call.future = future
        call.retry_at = None
        timeout = call.node.step.timeout_s
        call.deadline = time.monotonic() + timeout if timeout else None
        return future

    def _ref(self, handle: Handle) -> OutputRef:
        return self.outputs[handle.node_id][handle.output or SINGLE_OUTPUT].ref

    def _driver_pool(self) -> ThreadExecutor:
        # Steps marked in_driver (registering models, datasets) run here, one at a time, beside the executor.
        if self._in_driver is None:
            self._in_driver = ThreadExecutor(max_workers=1)
        return self._in_driver

    def close(self) -> None:
        """Stop the thread of in-driver steps (the executor is its owner's to shut down)."""
        if self._in_driver is not None:
            self._in_driver.shutdown(wait=not self.abandoned)

    def _local_value(self, handle: Handle) -> Any:
        return read_only(self.outputs[handle.node_id][handle.output or SINGLE_OUTPUT].value())

    def _stored_input(self, handle: Handle) -> StoredInput:
        return StoredInput(self._ref(handle))

    def _value(self, handle: Handle) -> Any:
        value = self.outputs[handle.node_id][handle.output or SINGLE_OUTPUT].value()
        return read_only(value) if self._in_process else value

    # -- ending a call -----------------------------------------------------------------------------------

    def _finish(self, call: _Call, future: cf.Future[CallResult], delayed: list[_Call]) -> None:
        try:
            result = future.result()
        except Exception as error:
            result = CallResult(error=error, traceback=f"{type(error).__name__}: {error}")
        limit = call.node.step.timeout_s
        if result.error is None and limit is not None and result.duration_s > limit:
            # The inline executor cannot interrupt a call: it fails it afterwards, like a stopped one.
            late = StepTimeout(f"step {call.node.id!r} ran longer than its timeout_s={limit}")
            result = CallResult(
                error=late,
                traceback=str(late),
                duration_s=result.duration_s,
                log=result.log,
                journal=result.journal,
            )
        self._replay(call, result)
        if result.error is not None:
            self._failed_attempt(call, result, delayed)
            return
        outputs: dict[str, Output] = {}
        artifacts: list[tuple[str, str, int]] = []
        for name, ref in (result.refs or {}).items():
            outputs[name] = Output(ref, self.tracker)
            artifacts.append((artifact_path(name, ref.serializer), ref.digest, ref.size))
        for name, stored in result.stored.items():
            digest = self.tracker.blobs.put_bytes(stored.data)
            ref = OutputRef(
                name, digest, stored.content_hash, stored.serializer, stored.python_type, len(stored.data)
            )
            value = result.values.get(name) if result.values is not None else None
            outputs[name] = Output(ref, self.tracker, value, loaded=result.values is not None)
            artifacts.append((artifact_path(name, stored.serializer), digest, len(stored.data)))
        artifacts += self._log_artifact(result.log)
        record = self._call_record(
            call,
            status=StepStatus.FINISHED,
            duration_s=result.duration_s,
            outputs=tuple(o.ref for o in outputs.values()),
        )
        self._save(call, record, artifacts)
        self.outputs[call.node.id] = outputs
        if self.progress:
            self.progress(call.node.id, record)

    def _failed_attempt(self, call: _Call, result: CallResult, delayed: list[_Call]) -> None:
        step = call.node.step
        if isinstance(result.error, TrialStopped):
            self.stopped = str(result.error)  # a decision, not a failure: never retried
        elif call.attempt <= step.retries:
            # Each failed attempt leaves its reason on the step's run (a lost worker, a timeout, an error).
            reason = result.error or RuntimeError("unknown failure")
            self.tracker.store.set_tags(
                call.run.run_id,
                {f"loopml.attempt.{call.attempt}.error": f"{type(reason).__name__}: {reason}"[:5000]},
            )
            call.retry_at = time.monotonic() + step.retry_delay_s * step.backoff ** (call.attempt - 1)
            call.attempt += 1
            delayed.append(call)
            return
        error = result.error or RuntimeError("unknown failure")
        text = result.traceback or f"{type(error).__name__}: {error}"
        record = self._call_record(call, status=StepStatus.FAILED, duration_s=result.duration_s, error=text)
        self._save(call, record, self._log_artifact(result.log))
        self.failed[call.node.id] = text
        if step.on_failure is not None:
            failure = StepFailure(
                node=call.node.id, step=step.qualified_name, error=error, attempt=call.attempt, traceback=text
            )
            try:
                step.on_failure(failure)
            except Exception as hook_error:
                self.failed[call.node.id] += (
                    f"\non_failure hook raised {type(hook_error).__name__}: {hook_error}"
                )
        if self.progress:
            self.progress(call.node.id, record)

    def _call_record(
        self,
        call: _Call,
        *,
        status: StepStatus,
        duration_s: float,
        outputs: tuple[OutputRef, ...] = (),
        error: str | None = None,
    ) -> StepRecord:
        """The record of a call that ran (finished or failed): only calls that may be served again from
        the cache keep their key digest."""
        return StepRecord(
            node=call.node.id,
            step=call.node.step.qualified_name,
            status=status,
            cache=call.cache,
            run_id=call.run.run_id,
            cache_note=call.cache_note,
            cache_key=call.key.digest if call.key is not None and call.cache is CacheState.MISS else None,
            key=call.key.record if call.key is not None else None,
            upstream=call.node.upstream,
            outputs=outputs,
            attempts=call.attempt,
            started_time=call.started_ms,
            duration_ms=round(duration_s * 1000),
            error=error,
        )

    def _save(self, call: _Call, record: StepRecord, artifacts: list[tuple[str, str, int]]) -> None:
        params = call_params(call.node.step.fn, call.node.args, call.node.kwargs)
        self.store.record_step(self.pipeline_run, record, params=params, artifacts=artifacts)

    def _replay(self, call: _Call, result: CallResult) -> None:
        """Write what a cluster worker logged into the step's run: from its reply, or, when none came (the
        task was killed or its worker lost), from what it posted to the mailbox while it ran."""
        if call.mailbox is not None:
            if result.journal is None:
                result.journal = Journal.joined(call.mailbox.take(call.mailbox_key))
            else:
                call.mailbox.drop(call.mailbox_key)
            call.mailbox = None  # taken or dropped: a retry posts under its own key
        if result.journal:  # also of a failed attempt: what it logged before failing is kept, as locally
            try:
                replay(result.journal, self.tracker, call.run.run_id)
            except LoopMLError as error:
                if result.error is None:
                    result.error, result.traceback = error, f"{type(error).__name__}: {error}"

    def _expire(self, running: dict[cf.Future[CallResult], _Call], delayed: list[_Call]) -> None:
        now = time.monotonic()
        for future, call in list(running.items()):
            if call.deadline is not None and now >= call.deadline and not future.done():
                del running[future]
                if not self.executor.kill(future):  # threads cannot be stopped: their result is ignored
                    self.abandoned = True
                timeout = StepTimeout(
                    f"step {call.node.id!r} ran longer than its timeout_s={call.node.step.timeout_s}"
                )
                result = CallResult(
                    error=timeout, traceback=str(timeout), duration_s=call.node.step.timeout_s or 0.0
                )
                self._replay(call, result)
                self._failed_attempt(call, result, delayed)

    @staticmethod
    def _wait_time(running: dict[cf.Future[CallResult], _Call], delayed: list[_Call]) -> float | None:
        moments = [c.deadline for c in running.values() if c.deadline is not None]
        moments += [c.retry_at for c in delayed if c.retry_at is not None]
        return max(0.0, min(moments) - time.monotonic()) if moments else None

    def _record_reuse(self, node: Node, run: Run, key: Any, cache: CacheState, source: StepRecord) -> None:
        record = StepRecord(
            node=node.id,
            step=node.step.qualified_name,
            status=StepStatus.CACHED,
            cache=CacheState.HIT if key is not None and key.digest == source.cache_key else cache,
            run_id=run.run_id,
            cache_key=key.digest if key is not None and cache is CacheState.MISS else None,
            key=key.record if key is not None else None,
            cached_from=source.cached_from or source.run_id,
            upstream=node.upstream,
            outputs=source.outputs,
            attempts=0,
            started_time=now_ms(),
            duration_ms=0,
        )
        artifacts = [(artifact_path(o.name, o.serializer), o.digest, o.size) for o in source.outputs]
        self.store.record_step(
            self.pipeline_run,
            record,
            params=call_params(node.step.fn, node.args, node.kwargs),
            artifacts=artifacts,
            tags=self.store.carried_tags(source.run_id) if source.run_id else None,
        )
        self.outputs[node.id] = {o.name: Output(o, self.tracker) for o in source.outputs}
        self.reused.add(node.id)
        if self.progress:
            self.progress(node.id, record)

    def _skip(self, node: Node) -> None:
        record = StepRecord(
            node=node.id,
            step=node.step.qualified_name,
            status=StepStatus.SKIPPED,
            cache=CacheState.OFF if not node.step.cache else CacheState.MISS,
            upstream=node.upstream,
            started_time=now_ms(),
            error="not run: " + ", ".join(sorted(u for u in node.upstream if u in self.failed)) + " failed",
        )
        self.store.record_step(self.pipeline_run, record)
        self.failed[node.id] = record.error or ""
        if self.progress:
            self.progress(node.id, record)

    def _log_artifact(self, log: str) -> list[tuple[str, str, int]]:
        if not log:
            return []
        data = log.encode()
        return [("logs/step.log", self.tracker.blobs.put_bytes(data), len(data))]

    def result(self, returned: Any) -> tuple[Any, Any]:
        """(the value the pipeline function returned with outputs filled in, its JSON form for the record)."""
        value = replace_handles(
            returned, lambda h: self.outputs[h.node_id][h.output or SINGLE_OUTPUT].value()
        )
        stored = replace_handles(
            returned, lambda h: {"$output": h.node_id, "name": h.output or SINGLE_OUTPUT}
        )
        try:
            json.dumps(stored)
        except (TypeError, ValueError):
            stored = {"$repr": repr(stored)[:10_000]}
        return value, stored
