"""Hyperparameter sweeps: run a pipeline over a grid or random space in parallel, keep the best trial.

    result = loopml.sweep(train, {"C": [0.1, 1.0, 10.0]}, metric="metrics.roc_auc", mode="max")
    result.best.params, result.best.value

Each trial is a pipeline run, a child of the sweep's own run; trials share the step cache, so the steps
every trial has in common (loading, splitting) run once.

On a cluster (`executor="ray"`) the trials are driven from this process, a few at a time, and their steps
run as Ray tasks: the metadata is written here, as for any pipeline on Ray. `early_stopping=ASHA(...)`
stops trials whose intermediate metric falls behind (see `loopml.pipelines.early_stopping`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from loopml.core.errors import InvalidInput
from loopml.core.executors import Executor, ThreadExecutor, TrialOutcome, executor_for
from loopml.core.settings import Settings
from loopml.pipelines.early_stopping import ASHA, StoppingHook, release, rung_table_for
from loopml.pipelines.pipeline import Pipeline
from loopml.pipelines.runner import PipelineFailed
from loopml.tracking.fluent import start_run
from loopml.tracking.tracker import Tracker, default_tracker, tracker_for

MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high] (random search); `log=True` draws its logarithm uniformly."""

    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random) -> float:
        """One draw."""
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class IntRange:
    """An integer drawn uniformly from low..high inclusive (random search)."""

    low: int
    high: int

    def sample(self, rng: random.Random) -> int:
        """One draw."""
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class Trial:
    """One trial: its params, the metric it reached (None if it failed), its pipeline run."""

    index: int
    params: dict[str, Any]
    value: float | None
    run_id: str | None
    error: str | None
    duration_s: float
    stopped: bool = False  # stopped early by the scheduler (`error` says where)


@dataclass(frozen=True)
class SweepResult:
    """All trials of a sweep and the best one."""

    run_id: str
    metric: str
    mode: str
    trials: tuple[Trial, ...]
    best: Trial


def sweep(
    pipeline: Pipeline,
    space: Mapping[str, Sequence[Any] | Uniform | IntRange],
    *,
    metric: str | Callable[[Any], float],
    mode: Literal["max", "min"] = "max",
    n_trials: int | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    executor: str | Executor | None = None,
    tracker: Tracker | None = None,
    early_stopping: ASHA | None = None,
) -> SweepResult:
    """Run `pipeline` for each point of `space` in parallel; the best trial by `metric` wins.

    `space` maps params to lists of values (a grid: every combination, or `n_trials` drawn from it) or to
    `Uniform` / `IntRange` (random search: `n_trials` draws). `metric` is a dotted path into the pipeline's
    return value ("metrics.roc_auc") or a function of it. `params` are fixed for every trial. `executor` is
    where trials run ('threads' by default, 'processes', or 'ray' / 'ray://HOST:PORT' for a cluster);
    `early_stopping=ASHA("val_loss", mode="min")` stops trials whose steps log a poor intermediate value.
    """
    tracker = tracker or default_tracker()
    configs = _configs(pipeline, space, n_trials=n_trials, seed=seed)
    fixed = dict(params or {})
    pipeline.check_params({**fixed, **configs[0]})  # a wrong name or type fails before any trial runs
    if mode not in ("max", "min"):
        raise InvalidInput(f"mode must be 'max' or 'min', got {mode!r}")
    if early_stopping is not None and not isinstance(early_stopping, ASHA):
        raise InvalidInput("early_stopping must be ASHA(metric, ...)")
    chosen = executor_for(executor or tracker.settings.executor)
    if early_stopping is not None and chosen.name == "processes":
        raise InvalidInput("early stopping needs trials on 'threads', 'inline' or 'ray', not in processes")
    label = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    with start_run(
        experiment=pipeline.experiment or pipeline.name,
        name=f"sweep-{pipeline.name}",
        tracker=tracker,
        tags={"loopml.sweep": pipeline.qualified_name, "loopml.sweep.metric": label},
    ) as run:
        # On a cluster the driver runs each trial's pipeline (the only writer of the metadata) and the
        # steps go to the cluster; elsewhere a trial is a whole pipeline run inside one worker.
        on_cluster = chosen.remote_workers
        drivers = ThreadExecutor(max_workers=chosen.max_workers) if on_cluster else chosen
        in_process = on_cluster or chosen.name in ("inline", "threads")
        table = rung_table_for(early_stopping, chosen) if early_stopping is not None else None
        trial = functools.partial(
            _trial,
            pipeline=pipeline,
            fixed=fixed,
            metric=metric,
            parent_run_id=run.run_id,
            tracker=tracker if in_process else None,
            settings=tracker.settings,
            step_executor=chosen if on_cluster else "inline",
            stopping=(early_stopping.metric, table) if early_stopping is not None else None,
        )
        try:
            # The first trial runs alone: the steps all trials share (load, split) are then cached for
            # the others instead of being computed by each of them at once.
            outcomes = drivers.sweep(trial, _numbered(configs[:1], 0))
            if len(configs) > 1:
                outcomes += [_shifted(o, 1) for o in drivers.sweep(trial, _numbered(configs[1:], 1))]
        except BaseException:
            if on_cluster:  # Ctrl-C: stop the trials' tasks, so the driver threads end at once
                chosen.shutdown(wait=False)
            raise
        finally:
            if table is not None:
                release(table)
            if on_cluster:
                drivers.shutdown()
            if not isinstance(executor, Executor):
                chosen.shutdown()
        trials = tuple(_trial_from(outcome) for outcome in outcomes)
        scored = [t for t in trials if t.value is not None and not math.isnan(t.value)]
        if early_stopping is not None:
            run.set_tags({"loopml.sweep.stopped": str(sum(t.stopped for t in trials))})
        if not scored:
            raise InvalidInput(f"every trial of the sweep failed; the first error:\n{trials[0].error}")
        best = (max if mode == "max" else min)(scored, key=lambda t: t.value or 0.0)
        run.log_metric(f"best_{label}" if isinstance(metric, str) else "best", best.value or 0.0)
        run.set_tags({"loopml.sweep.best_run": best.run_id or "", "loopml.sweep.trials": str(len(trials))})
        run.log_params({f"best.{k}": v for k, v in best.params.items()})
    return SweepResult(run.run_id, label, mode, trials, best)


def _configs(
    pipeline: Pipeline, space: Mapping[str, Any], *, n_trials: int | None, seed: int
) -> list[dict[str, Any]]:
    if not space:
        raise InvalidInput(f"sweep of {pipeline.name!r}: the search space is empty")
    if n_trials is not None and not 1 <= n_trials <= MAX_TRIALS:
        raise InvalidInput(f"n_trials must be between 1 and {MAX_TRIALS}, got {n_trials}")
    rng = random.Random(seed)  # noqa: S311  (reproducible sampling, not secrets)
    names = list(space)
    if all(isinstance(space[n], list | tuple) for n in names):
        for name in names:
            if not space[name]:
                raise InvalidInput(f"sweep of {pipeline.name!r}: param {name!r} has no values")
        grid = [
            dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))
        ]
        if len(grid) > MAX_TRIALS and n_trials is None:
            raise InvalidInput(f"the grid has {len(grid)} points; pass n_trials to sample some")
        return grid if n_trials is None or n_trials >= len(grid) else rng.sample(grid, n_trials)
    if n_trials is None:
        raise InvalidInput("a random search (Uniform / IntRange in the space) needs n_trials")
    for name in names:
        if not isinstance(space[name], list | tuple | Uniform | IntRange):
            raise InvalidInput(
                f"param {name!r}: give a list of values, Uniform(low, high) or IntRange(low, high)"
            )
    return [
        {
            n: rng.choice(list(space[n])) if isinstance(space[n], list | tuple) else space[n].sample(rng)
            for n in names
        }
        for _ in range(n_trials)
    ]


_INDEX = (
    "__loopml_trial__"  # the trial's number travels with its config, so early stopping can tell trials apart
)


def _numbered(configs: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    return [{**config, _INDEX: start + i} for i, config in enumerate(configs)]


def _trial(
    *,
    pipeline: Pipeline,
    fixed: dict[str, Any],
    metric: str | Callable[[Any], float],
    parent_run_id: str,
    tracker: Tracker | None,
    settings: Settings,
    step_executor: str | Executor,
    stopping: tuple[str, Any] | None,
    **config: Any,
) -> tuple[float, str]:
    index = config.pop(_INDEX)
    opened = tracker or tracker_for(settings)
    hook = StoppingHook(stopping[0], index, stopping[1]) if stopping is not None else None
    try:
        result = pipeline.run(
            {**fixed, **config},
            executor=step_executor,
            tracker=opened,
            parent_run_id=parent_run_id,
            metric_hook=hook,
        )
    except PipelineFailed as failure:
        if failure.stopped:
            raise TrialStoppedEarly(str(failure.stopped), failure.run_id) from None
        raise TrialFailed(str(failure), failure.run_id) from None
    value = metric(result.value) if callable(metric) else _lookup(result.value, metric)
    return float(value), result.run_id


class TrialFailed(Exception):
    """A trial's pipeline run failed (its run id travels with it)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message, run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return str(self.args[0])


class TrialStoppedEarly(TrialFailed):
    """A trial the early-stopping scheduler stopped (not a failure of its code)."""


def _lookup(value: Any, path: str) -> Any:
    found = value
    for part in path.split("."):
        if isinstance(found, Mapping) and part in found:
            found = found[part]
        else:
            raise InvalidInput(f"the pipeline's return value has no {path!r} (metric path)")
    if not isinstance(found, int | float):
        raise InvalidInput(f"metric {path!r} is a {type(found).__name__}, not a number")
    return found


def _shifted(outcome: TrialOutcome, by: int) -> TrialOutcome:
    return dataclasses.replace(outcome, index=outcome.index + by)


def _trial_from(outcome: TrialOutcome) -> Trial:
    params = {k: v for k, v in outcome.config.items() if k != _INDEX}
    if outcome.error is not None:
        run_id = getattr(outcome.error, "run_id", None)
        stopped = isinstance(outcome.error, TrialStoppedEarly)
        return Trial(outcome.index, params, None, run_id, str(outcome.error), outcome.duration_s, stopped)
    value, run_id = outcome.value
    return Trial(outcome.index, params, value, run_id, None, outcome.duration_s)
