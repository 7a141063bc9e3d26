"""`@step`: a plain function that, called inside a `@pipeline`, becomes a cached, retried node of its DAG.

Called outside a pipeline, a step is just its function: tests and notebooks can call it directly.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from loopml.core.errors import InvalidInput
from loopml.core.resources import parse_resources
from loopml.pipelines.graph import Handle, current_graph, iter_handles
from loopml.pipelines.params import type_problem

FailureHook = Callable[["StepFailure"], None]


class StepFailure:
    """What an `on_failure` hook receives: the step call that failed and why."""

    def __init__(self, *, node: str, step: str, error: BaseException, attempt: int, traceback: str) -> None:
        self.node = node
        self.step = step
        self.error = error
        self.attempt = attempt
        self.traceback = traceback

    def __repr__(self) -> str:
        return f"StepFailure(node={self.node!r}, attempt={self.attempt}, error={self.error!r})"


class Step:
    """A pipeline step; build it with `@step`. Options are stored as given (they are recorded with runs)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_s: float = 1.0,
        backoff: float = 2.0,
        timeout_s: float | None = None,
        cache: bool = True,
        cache_salt: str | None = None,
        on_failure: FailureHook | None = None,
        outputs: Sequence[str] | None = None,
        resources: Mapping[str, Any] | None = None,
        in_driver: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.backoff = backoff
        self.timeout_s = timeout_s
        self.cache = cache
        self.cache_salt = cache_salt
        self.on_failure = on_failure
        self.outputs = tuple(outputs) if outputs else ()
        self.resources = dict(resources or {})
        self.in_driver = in_driver
        functools.update_wrapper(self, fn)
        _check_options(self)
        self.resource_request = parse_resources(self.resources, where=f"@step on {self.qualified_name}")

    @property
    def qualified_name(self) -> str:
        """`module:qualname`, how runs name the step."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __repr__(self) -> str:
        return f"<step {self.qualified_name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = current_graph()
        if graph is None:
            return self.fn(*args, **kwargs)
        return graph.add(self, args, kwargs)

    def __reduce__(self) -> Any:
        # Worker processes import the step by name rather than unpickling its function.
        return (load_step, (self.fn.__module__, self.fn.__qualname__))

    def check_literals(self, node: str, arguments: Mapping[str, Any]) -> None:
        """Check the plain values passed to this step call against the function's annotations."""
        hints = _type_hints(self.fn)
        for name, value in arguments.items():
            annotation = hints.get(name)
            if annotation is None or annotation is Any or any(True for _ in iter_handles(value)):
                continue
            problem = type_problem(annotation, value)
            if problem:
                raise InvalidInput(f"step {node!r}: argument {name!r} {problem}")


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_s: float = 1.0,
    backoff: float = 2.0,
    timeout_s: float | None = None,
    cache: bool = True,
    cache_salt: str | None = None,
    on_failure: FailureHook | None = None,
    outputs: Sequence[str] | None = None,
    resources: Mapping[str, Any] | None = None,
    in_driver: bool = False,
) -> Callable[[Callable[..., Any]], Step]: ...
def step(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Make `fn` a pipeline step: `@step` or `@step(retries=2, timeout_s=60, cache=False, outputs=("a", "b"))`.

    `retries` re-runs a failing call after `retry_delay_s`, multiplied by `backoff` each time; `timeout_s`
    fails a call that runs longer (processes are stopped, threads abandoned); `on_failure(StepFailure)` is
    called once a call has failed for good. `resources={"cpu": 2, "gpu": 1, "memory": "4GB"}` is reserved
    for each call on a cluster executor (Ray); the local executors check it and run one call per worker.
    `in_driver=True` runs the step in the process that runs the pipeline whatever the executor: for steps
    that write the registry or datasets (which a cluster worker cannot reach), like `register_model`. `outputs` names the items of a returned tuple, which are then
    stored (and cached) separately and can be unpacked inside the pipeline. `cache_salt` is part of the
    cache key: change it to force a re-run.
    """
    if fn is not None:
        return Step(fn, **options)
    return lambda function: Step(function, **options)


def load_step(module: str, qualname: str) -> Step:
    """The step object named `module:qualname`, imported (how worker processes and the CLI find steps)."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, Step):
        raise InvalidInput(f"{module}:{qualname} is not a @loopml.step")
    return target


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def _check_options(step: Step) -> None:
    where = f"@step on {step.qualified_name}"
    if not callable(step.fn) or inspect.isclass(step.fn):
        raise InvalidInput(f"{where}: a step must be a function")
    if not isinstance(step.retries, int) or step.retries < 0:
        raise InvalidInput(f"{where}: retries must be an integer >= 0, got {step.retries!r}")
    if step.retry_delay_s < 0 or step.backoff < 1:
        raise InvalidInput(f"{where}: retry_delay_s must be >= 0 and backoff >= 1")
    if step.timeout_s is not None and step.timeout_s <= 0:
        raise InvalidInput(f"{where}: timeout_s must be > 0, got {step.timeout_s!r}")
    if len(set(step.outputs)) != len(step.outputs) or not all(
        isinstance(o, str) and o.isidentifier() for o in step.outputs
    ):
        raise InvalidInput(f"{where}: outputs must be distinct identifiers, got {step.outputs!r}")
    if not isinstance(step.in_driver, bool):
        raise InvalidInput(f"{where}: in_driver must be True or False, got {step.in_driver!r}")
    if "#" in step.name or "/" in step.name or not step.name:
        raise InvalidInput(f"{where}: a step name must be non-empty and contain no '#' or '/'")


def is_handle(value: Any) -> bool:
    """Whether `value` is a step output handle (for callers that must not touch it)."""
    return isinstance(value, Handle)
