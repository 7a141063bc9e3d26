"""The module-level tracking API (`loopml.start_run`, `loopml.log_metric`, ...), as MLflow users know it.

The active run is held in a ContextVar, so each thread and each asyncio task has its own: a run started in
one thread is not the active run of another.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.environment import entry_point, git_state, python_environment, user_name
from loopml.tracking.records import Artifact, GitInfo, RunInput, RunStatus
from loopml.tracking.tracker import Tracker, default_tracker
from loopml.tracking.values import tag_value

_active_runs: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "loopml_active_runs", default=()
)


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    *,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    inputs: Sequence[RunInput] = (),
    note: str | None = None,
    durable: bool = False,
    tracker: Tracker | None = None,
) -> ActiveRun:
    """Start a run and make it the active one; use it as a context manager to end it.

    `durable=True` makes every logging call wait for its commit (survives the process being killed).
    `nested=True` starts a child of the active run; without it, starting a run while one is active is an error.
    """
    stack = _active_runs.get()
    if stack and not nested and parent_run_id is None:
        raise InvalidInput(
            f"run {stack[-1].run_id} is already active: end it first or pass nested=True for a child run"
        )
    if nested and parent_run_id is None and stack:
        parent_run_id = stack[-1].run_id
    tracker = tracker or default_tracker()
    settings = tracker.settings
    exp = tracker.store.experiment_for_run(experiment or settings.experiment)
    git = git_state(max_diff_bytes=settings.max_diff_bytes) if settings.capture_git else None
    env = python_environment(settings.home_dir / "state") if settings.capture_packages else None
    run = tracker.store.create_run(
        exp.experiment_id,
        name=name,
        parent_run_id=parent_run_id,
        tags={k: tag_value(k, v) for k, v in (tags or {}).items()},
        note=note,
        user=user_name(),
        entry_point=entry_point(),
        git=GitInfo(git.commit, git.branch, git.dirty, git.diff_hash) if git else None,
        git_diff=(git.diff, git.diff_truncated) if git and git.diff is not None else None,
        environment=(env.hash, env.python_version, env.platform, env.packages) if env else None,
    )
    active = ActiveRun(tracker, run, durable=durable)
    if inputs:
        active.log_inputs(inputs)
    _active_runs.set((*stack, active))
    _open_runs[active] = None
    active._on_end.append(_pop)
    return active


# Runs started by start_run and not ended yet, in any thread or task: ended at interpreter exit.
_open_runs: dict[ActiveRun, None] = {}


def _end_runs_at_exit() -> None:
    """End runs left open: FINISHED after a normal exit, FAILED (KILLED on Ctrl-C) after an uncaught error."""
    error = getattr(sys, "last_value", None)  # set by the interpreter when the script died of an exception
    status, message = RunStatus.FINISHED, None
    if isinstance(error, KeyboardInterrupt):
        status, message = RunStatus.KILLED, "KeyboardInterrupt"
    elif error is not None:
        status, message = RunStatus.FAILED, f"{type(error).__name__}: {error}"
    for run in reversed(list(_open_runs)):
        try:
            run.end(status, error=message)
        except Exception as failure:  # the store may be gone at exit; never mask the script's own outcome
            print(f"loopml: could not end run {run.run_id} at exit: {failure}", file=sys.stderr)


def _forget_runs_in_child() -> None:
    # A forked child must not end (or log into) the parent's runs: they stay the parent's.
    _open_runs.clear()
    _active_runs.set(())


atexit.register(_end_runs_at_exit)
os.register_at_fork(after_in_child=_forget_runs_in_child)


def _pop(run: ActiveRun) -> None:
    _open_runs.pop(run, None)
    stack = _active_runs.get()
    if run in stack:
        _active_runs.set(tuple(r for r in stack if r is not run))


@contextlib.contextmanager
def activated(run: ActiveRun) -> Iterator[ActiveRun]:
    """Make `run` the active run of this context for the block, without ending it afterwards.

    Pipelines use it so that `loopml.log_metric` inside a step logs into the step's own run.
    """
    token = _active_runs.set((*_active_runs.get(), run))
    try:
        yield run
    finally:
        _active_runs.reset(token)


def active_run() -> ActiveRun | None:
    """The innermost active run of this thread / task, or None."""
    stack = _active_runs.get()
    return stack[-1] if stack else None


def _require_active() -> ActiveRun:
    stack = _active_runs.get()
    if not stack:
        raise InvalidInput("no active run: call loopml.start_run() first")
    return stack[-1]


def end_run(status: str = "FINISHED") -> None:
    """End the innermost active run (flushing its metrics first)."""
    run = active_run()
    if run is not None:
        try:
            run.end(RunStatus(status))
        except ValueError:
            raise InvalidInput(f"unknown run status {status!r}; use FINISHED, FAILED or KILLED") from None


def flush() -> None:
    """Write every buffered metric point of this process; returns once they are committed."""
    default_tracker().flush()


def log_param(key: str, value: Any) -> None:
    """Record a param of the active run."""
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Record params of the active run (nested dicts become dotted keys)."""
    _require_active().log_params(params)


def log_metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
    """Append a metric point to the active run."""
    stack = _active_runs.get()
    if not stack:
        raise InvalidInput("no active run: call loopml.start_run() first")
    stack[-1].log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
    """Append one point per metric to the active run."""
    _require_active().log_metrics(metrics, step, timestamp)


def set_tag(key: str, value: Any) -> None:
    """Set a tag of the active run."""
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags of the active run."""
    _require_active().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> list[Artifact]:
    """Store a file or folder as an artifact of the active run."""
    return _require_active().log_artifact(local_path, artifact_path)


def log_config(path: str | os.PathLike[str], *, as_params: bool = True) -> Artifact:
    """Keep a YAML/TOML/JSON config file with the active run and log its values as params."""
    return _require_active().log_config(path, as_params=as_params)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[Artifact]:
    """Store a folder's contents as artifacts of the active run."""
    return _require_active().log_artifacts(local_dir, artifact_path)
