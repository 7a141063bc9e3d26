"""Hyperparameter sweeps: run a pipeline over a grid or random space in parallel, keep the best trial.

    result = loopml.sweep(train, {"C": [0.1, 1.0, 10.0]}, metric="metrics.roc_auc", mode="max")
    result.best.params, result.best.value

Each trial is a pipeline run, a child of the sweep's own run; trials share the step cache, so the steps
every trial has in common (loading, splitting) run once.
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
from loopml.core.executors import Executor, TrialOutcome, executor_for
from loopml.core.settings import Settings
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
) -> SweepResult:
    """Run `pipeline` for each point of `space` in parallel; the best trial by `metric` wins.

    `space` maps params to lists of values (a grid: every combination, or `n_trials` drawn from it) or to
    `Uniform` / `IntRange` (random search: `n_trials` draws). `metric` is a dotted path into the pipeline's
    return value ("metrics.roc_auc") or a function of it. `params` are fixed for every trial.
    """
    tracker = tracker or default_tracker()
    configs = _configs(pipeline, space, n_trials=n_trials, seed=seed)
    fixed = dict(params or {})
    pipeline.check_params({**fixed, **configs[0]})  # a wrong name or type fails before any trial runs
    if mode not in ("max", "min"):
        raise InvalidInput(f"mode must be 'max' or 'min', got {mode!r}")
    chosen = executor_for(executor)
    label = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    with start_run(
        experiment=pipeline.experiment or pipeline.name,
        name=f"sweep-{pipeline.name}",
        tracker=tracker,
        tags={"loopml.sweep": pipeline.qualified_name, "loopml.sweep.metric": label},
    ) as run:
        in_process = chosen.name in ("inline", "threads")
        trial = functools.partial(
            _trial,
            pipeline=pipeline,
            fixed=fixed,
            metric=metric,
            parent_run_id=run.run_id,
            tracker=tracker if in_process else None,
            settings=tracker.settings,
        )
        try:
            # The first trial runs alone: the steps all trials share (load, split) are then cached for
            # the others instead of being computed by each of them at once.
            outcomes = chosen.sweep(trial, configs[:1])
            outcomes += [_shifted(o, 1) for o in chosen.sweep(trial, configs[1:])] if len(configs) > 1 else []
        finally:
            if not isinstance(executor, Executor):
                chosen.shutdown()
        trials = tuple(_trial_from(outcome) for outcome in outcomes)
        scored = [t for t in trials if t.value is not None and not math.isnan(t.value)]
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


def _trial(
    *,
    pipeline: Pipeline,
    fixed: dict[str, Any],
    metric: str | Callable[[Any], float],
    parent_run_id: str,
    tracker: Tracker | None,
    settings: Settings,
    **config: Any,
) -> tuple[float, str]:
    opened = tracker or tracker_for(settings)
    try:
        result = pipeline.run(
            {**fixed, **config}, executor="inline", tracker=opened, parent_run_id=parent_run_id
        )
    except PipelineFailed as failure:
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
    if outcome.error is not None:
        run_id = getattr(outcome.error, "run_id", None)
        return Trial(
            outcome.index, dict(outcome.config), None, run_id, str(outcome.error), outcome.duration_s
        )
    value, run_id = outcome.value
    return Trial(outcome.index, dict(outcome.config), value, run_id, None, outcome.duration_s)
