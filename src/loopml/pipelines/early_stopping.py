"""Early stopping of sweep trials: asynchronous successive halving (ASHA), as in Ray Tune's ASHAScheduler.

    loopml.sweep(train, space, metric="metrics.auc", early_stopping=ASHA("val_auc", mode="max", max_t=30))

A step reports progress by logging the metric at increasing steps (`loopml.log_metric("val_auc", v, step=epoch)`).
Rungs sit at `grace_period * reduction_factor**k` steps below `max_t`. The first time a trial reaches a rung,
its value is compared with the values other trials had there: unless it is in the best `1/reduction_factor`
of them, the trial stops (`TrialStopped` is raised from `log_metric`, and the trial is recorded as stopped).
Trials are judged as they report, never waiting for each other (the "asynchronous" in ASHA), so a stopped
trial frees its worker at once. On Ray the rung table lives in a small actor all trials report to; on
threads it is an object of this process.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from loopml.core.errors import InvalidInput
from loopml.core.executors import Executor


class TrialStopped(Exception):
    """Raised inside a trial's step when the scheduler stops the trial; the trial ends as 'stopped'."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message, step)
        self.step = step

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ASHA:
    """Stop trials whose `metric` is not in the top `1/reduction_factor` at a rung (see the module)."""

    metric: str
    mode: Literal["max", "min"] = "max"
    grace_period: int = 1
    reduction_factor: float = 3.0
    max_t: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise InvalidInput(
                "ASHA needs the name of the metric the steps log, e.g. ASHA('val_loss', mode='min')"
            )
        if self.mode not in ("max", "min"):
            raise InvalidInput(f"ASHA mode must be 'max' or 'min', got {self.mode!r}")
        if not isinstance(self.grace_period, int) or self.grace_period < 1:
            raise InvalidInput(f"ASHA grace_period must be an integer >= 1, got {self.grace_period!r}")
        if not isinstance(self.reduction_factor, int | float) or not self.reduction_factor > 1:
            raise InvalidInput(f"ASHA reduction_factor must be > 1, got {self.reduction_factor!r}")
        if not isinstance(self.max_t, int) or self.max_t <= self.grace_period:
            raise InvalidInput(f"ASHA max_t must be an integer above grace_period, got {self.max_t!r}")

    def rungs(self) -> list[float]:
        """The steps at which trials are compared, highest first: `grace_period * reduction_factor**k` up
        to `max_t` (as Ray Tune's ASHAScheduler places them)."""
        count = int(math.log(self.max_t / self.grace_period) / math.log(self.reduction_factor) + 1e-9) + 1
        return sorted((self.grace_period * self.reduction_factor**k for k in range(count)), reverse=True)


@dataclass
class RungTable:
    """The values trials had when they first reached each rung; decides whether a trial goes on."""

    asha: ASHA
    recorded: dict[float, dict[int, float]] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, trial: int, step: int, value: float) -> bool:
        """Record `value` of `trial` at `step`; False when the trial should stop."""
        score = value if self.asha.mode == "max" else -value
        if math.isnan(score):
            score = -math.inf  # a diverged trial is the worst, not incomparable
        with self._lock:
            if trial in self.stopped:
                return False
            if step >= self.asha.max_t:
                return True  # it has finished training: complete, not stopped (as in Ray Tune)
            for rung in self.asha.rungs():
                seen = self.recorded.setdefault(rung, {})
                if step < rung or trial in seen:
                    continue
                cutoff = _cutoff(list(seen.values()), self.asha.reduction_factor)
                seen[trial] = score
                if cutoff is not None and score < cutoff:
                    self.stopped.add(trial)
                    return False
                break
            return True


def _cutoff(values: list[float], reduction_factor: float) -> float | None:
    """The value a trial must reach to be in the top 1/reduction_factor of `values` (linear percentile)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * (1 - 1 / reduction_factor)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    if ordered[low] == -math.inf:
        return ordered[high] if position > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class StoppingHook:
    """The metric hook of one trial: reports the scheduler's metric, raises `TrialStopped` when told to."""

    metric: str
    trial: int
    table: Any  # a RungTable here, or a handle on the Ray actor holding it

    def __call__(self, key: str, value: float, step: int) -> None:
        if key != self.metric:
            return
        if isinstance(self.table, RungTable):
            going = self.table.report(self.trial, step, value)
        else:
            import ray  # only a trial on Ray gets an actor handle

            going = ray.get(self.table.report.remote(self.trial, step, value))
        if not going:
            raise TrialStopped(f"stopped early by ASHA at {key}={value:g} (step {step})", step)


def rung_table_for(asha: ASHA, executor: Executor) -> Any:
    """Where the trials of a sweep report: this process, or one Ray actor for trials on a cluster."""
    if not executor.remote_workers:
        return RungTable(asha)
    ray = executor.connect()  # type: ignore[attr-defined]
    actor = ray.remote(num_cpus=0, max_restarts=0)(RungTable)
    return actor.remote(asha)


def release(table: Any) -> None:
    """Stop the actor holding a sweep's rung table (a table of this process needs nothing)."""
    if not isinstance(table, RungTable):
        import ray

        ray.kill(table)
