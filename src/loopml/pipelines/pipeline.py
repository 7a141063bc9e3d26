"""`@pipeline`: a function whose step calls describe a DAG; calling it runs the DAG and returns its value.

    @loopml.step
    def clean(frame): ...

    @loopml.pipeline
    def train(data: DatasetRef = "iris@latest", depth: int = 3):
        table = clean(load(data))
        return evaluate(fit(table, depth=depth), table)

    train(depth=5)             # runs (cached steps are skipped) and returns the evaluation
    train.run({"depth": 5})    # the same, returning the run id and step records too

Params are checked against the signature before anything runs. The run is a tracking run (params,
dataset inputs, git commit and environment) with one child run per step call.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import sys
import traceback
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, overload

from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.core.executors import Executor, executor_for
from loopml.pipelines.graph import Graph, describing, done_describing, iter_handles
from loopml.pipelines.inputs import DatasetRef
from loopml.pipelines.keys import KeyMaker
from loopml.pipelines.params import Source, conformed, untyped_text
from loopml.pipelines.records import PipelineRunRecord
from loopml.pipelines.runner import PipelineFailed, Progress, Runner
from loopml.pipelines.store import pipeline_store
from loopml.tracking.active_run import MetricHook
from loopml.tracking.fluent import active_run, start_run
from loopml.tracking.records import RunStatus
from loopml.tracking.tracker import Tracker, default_tracker


@dataclass(frozen=True)
class PipelineResult:
    """A finished pipeline run: its id, the pipeline's return value, and the record of every step call."""

    run_id: str
    value: Any
    record: PipelineRunRecord


class Pipeline:
    """A pipeline; build it with `@pipeline`. Options are stored as given."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        experiment: str | None = None,
        executor: str | Executor | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.experiment = experiment
        self.executor = executor
        functools.update_wrapper(self, fn)

    @property
    def qualified_name(self) -> str:
        """`module:qualname`, how runs name the pipeline (and how the CLI finds it)."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __repr__(self) -> str:
        return f"<pipeline {self.qualified_name}>"

    def __reduce__(self) -> Any:
        # Worker processes (sweeps) import the pipeline by name rather than unpickling its function.
        return (load_pipeline, (self.qualified_name,))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(self.bind(*args, **kwargs)).value

    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The pipeline's params from a call's arguments, defaults filled in; `InvalidInput` when they do not fit."""
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError as error:
            raise InvalidInput(f"pipeline {self.name!r}: {error}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def check_params(self, params: Mapping[str, Any], *, source: Source = "python") -> dict[str, Any]:
        """`params` checked against the signature, defaults filled in; `source` says how to read them
        ("python": as given, "text": CLI strings, "stored": JSON recorded with an earlier run)."""
        signature = inspect.signature(self.fn)
        unknown = sorted(set(params) - set(signature.parameters))
        if unknown:
            raise InvalidInput(
                f"pipeline {self.name!r} has no param {', '.join(map(repr, unknown))}; "
                f"its params are: {', '.join(signature.parameters) or '(none)'}"
            )
        merged = self.bind(**params)
        hints = _hints(self.fn)
        checked: dict[str, Any] = {}
        for name, value in merged.items():
            annotation = hints.get(name)
            given = source if name in params else "python"
            if _is_dataset_annotation(annotation):
                checked[name] = value
            elif annotation is None or annotation is Any:
                checked[name] = untyped_text(value) if given == "text" and isinstance(value, str) else value
            else:
                checked[name], problem = conformed(annotation, value, source=given)
                if problem:
                    raise InvalidInput(f"pipeline {self.name!r}: param {name!r} {problem}")
        return checked

    def describe(self, params: Mapping[str, Any]) -> tuple[Graph, Any]:
        """Run the function in describe mode: (the DAG of its step calls, its return value with handles)."""
        graph = Graph(self.name)
        token = describing(graph)
        try:
            returned = self.fn(**params)
        except LoopMLError:
            raise
        except Exception as error:
            raise InvalidInput(
                f"pipeline {self.name!r} raised while describing its steps (before any ran), "
                f"at {_where(error)}: {type(error).__name__}: {error}"
            ) from error
        finally:
            done_describing(token)
        for handle in iter_handles(returned):
            if handle.graph is not graph:
                raise InvalidInput(f"pipeline {self.name!r} returns {handle!r}, made outside this pipeline")
        return graph, returned

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        executor: str | Executor | None = None,
        tracker: Tracker | None = None,
        progress: Progress | None = None,
        resume_from: PipelineRunRecord | None = None,
        params_from: Source = "python",
        parent_run_id: str | None = None,
        use_cache: bool = True,
        rerun_of: str | None = None,
        metric_hook: MetricHook | None = None,
    ) -> PipelineResult:
        """Run the pipeline with `params`; raises `PipelineFailed` (the run is recorded) when a step failed.

        `use_cache=False` runs every step (keys are still recorded); `rerun_of` marks the run as a
        reproduction of an earlier one (see `loopml pipeline rerun`); `metric_hook(key, value, step)` sees
        every metric point a step logs (a sweep's early stopping raises from it).
        """
        tracker = tracker or default_tracker()
        checked = self.check_params(dict(params or {}), source=params_from)
        resolved = {
            k: _resolve_dataset(self.name, k, v, tracker) if _is_dataset(self.fn, k) else v
            for k, v in checked.items()
        }
        graph, returned = self.describe(resolved)
        # LOOPML_EXECUTOR moves every run of a deployment (say, to a cluster) without touching the code.
        wanted = executor or tracker.settings.executor or self.executor
        own_executor = not isinstance(wanted, Executor)
        chosen = executor_for(wanted)
        store = pipeline_store(tracker)
        with start_run(
            experiment=self.experiment or self.name,
            name=self.name,
            nested=active_run() is not None and parent_run_id is None,
            parent_run_id=parent_run_id,
            tracker=tracker,
            tags={
                "loopml.pipeline": self.qualified_name,
                "loopml.executor": chosen.name,
                **_source_tag(self.fn),
            },
        ) as run:
            run.log_params({k: _param_form(v) for k, v in resolved.items() if _param_form(v) is not None})
            for value in resolved.values():
                if isinstance(value, DatasetRef):
                    run.log_input(
                        value.name, f"v{value.version}", digest=value.content_digest, context="training"
                    )
            store.create_run(
                run.run_id,
                pipeline=self.qualified_name,
                params={k: _param_form(v) for k, v in resolved.items()},
                executor=chosen.name,
                mode="resume" if resume_from else "rerun" if rerun_of else "run",
                source_run_id=resume_from.run_id if resume_from else rerun_of,
            )
            runner = Runner(
                tracker=tracker,
                executor=chosen,
                pipeline_run=run.run_id,
                experiment_id=run.experiment_id,
                keys=KeyMaker(
                    project_dir=tracker.settings.project_dir, cache_dir=tracker.settings.home_dir / "state"
                ),
                resume_from=resume_from,
                progress=progress,
                use_cache=use_cache,
                metric_hook=metric_hook,
            )
            finished = False
            try:
                runner.run(graph)
                finished = True
            finally:
                runner.close()
                if own_executor:  # never wait for a step that timed out or was interrupted in a thread
                    chosen.shutdown(wait=finished and not runner.abandoned)
            if runner.failed:
                failed = [n for n, text in runner.failed.items() if not text.startswith("not run:")]
                first = runner.failed[failed[0]] if failed else ""
                message = (
                    f"pipeline {self.name!r} failed in step {', '.join(map(repr, failed))} (run {run.run_id}); "
                    f"see `loopml pipeline show {run.run_id}`\n{first.rstrip()}"
                )
                if runner.stopped:
                    run.end(RunStatus.KILLED, error=runner.stopped)
                else:
                    run.end(RunStatus.FAILED, error=message[:8000])
                raise PipelineFailed(message, run_id=run.run_id, failed=failed, stopped=runner.stopped)
            value, stored = runner.result(returned)
            store.set_result(run.run_id, stored)
        return PipelineResult(run.run_id, value, store.get_run(run.run_id))


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...
@overload
def pipeline(
    *, name: str | None = None, experiment: str | None = None, executor: str | Executor | None = None
) -> Callable[[Callable[..., Any]], Pipeline]: ...
def pipeline(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make `fn` a pipeline: `@pipeline` or `@pipeline(executor="processes", experiment="fraud")`.

    The executor is "threads" (default), "inline", "processes", "threads:4" / "processes:2", or an
    `Executor`; independent steps run in parallel on it.
    """
    if fn is not None:
        return Pipeline(fn, **options)
    return lambda function: Pipeline(function, **options)


def load_pipeline(target: str) -> Pipeline:
    """The pipeline named `module:function` or `path/to/file.py:function` (the CLI's way to find one)."""
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise InvalidInput(f"name a pipeline as module:function or file.py:function, got {target!r}")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise NotFound(f"no file {module_name!r}")
        module_name = path.stem
        sys.path.insert(0, str(path.parent))
    elif "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise NotFound(f"cannot import {module_name!r}: {error}") from None
    except LoopMLError:
        raise
    except Exception as error:  # the user's module failed to import: say where, in one line
        raise InvalidInput(
            f"importing {module_name!r} failed at {_where(error)}: {type(error).__name__}: {error}"
        ) from error
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, Pipeline):
        raise InvalidInput(f"{target} is not a @loopml.pipeline")
    return found


def _source_tag(fn: Callable[..., Any]) -> dict[str, str]:
    """The pipeline's file relative to its git root, so `rerun` finds it in a worktree of the commit."""
    from loopml.tracking.environment import git_state

    try:
        path = Path(inspect.getsourcefile(fn) or "").resolve()
    except TypeError:
        return {}
    root = git_state(path.parent).root if path.is_file() else None
    if root is None or not path.is_relative_to(root):
        return {}
    return {"loopml.pipeline.source": path.relative_to(root).as_posix()}


def _where(error: BaseException) -> str:
    """file:line where `error` was raised (the syntax error's own location for a SyntaxError)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def _is_dataset(fn: Callable[..., Any], name: str) -> bool:
    return _is_dataset_annotation(_hints(fn).get(name))


def _is_dataset_annotation(annotation: Any) -> bool:
    return annotation is DatasetRef or DatasetRef in typing.get_args(annotation)


def _resolve_dataset(pipeline: str, name: str, value: Any, tracker: Tracker) -> DatasetRef | None:
    if value is None or (isinstance(value, DatasetRef) and value.record is not None):
        return value
    if not isinstance(value, str | DatasetRef):
        raise InvalidInput(f"pipeline {pipeline!r}: param {name!r} must name a dataset version (NAME@latest)")
    from loopml.datasets import catalog

    version = catalog(tracker).get(str(value))
    if isinstance(value, DatasetRef) and value.content_digest != version.digest:
        raise InvalidInput(
            f"pipeline {pipeline!r}: param {name!r} is {value} with content {value.content_digest[:12]}, but "
            f"{version.ref} in this project holds {version.digest[:12]}"
        )
    return DatasetRef(version.name, version.version, version.digest, version.kind, version)


def _param_form(value: Any) -> Any:
    """How a param is logged: dataset references as NAME@vN, plain values as they are, others not at all."""
    if isinstance(value, DatasetRef):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool | list | dict | tuple):
        return value
    return None
