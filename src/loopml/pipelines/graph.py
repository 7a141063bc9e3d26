"""The DAG a pipeline function builds: inside `@pipeline`, a step call records a node and returns handles.

A handle stands for a value that exists only once the pipeline runs. It can be passed to other steps (also
inside lists, tuples and dicts) and returned; anything that would need the value now (`if handle:`,
arithmetic, comparisons, attributes, iteration of a single output) raises `HandleMisuse` naming the step.
"""

from __future__ import annotations

import contextvars
import copy
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from loopml.core.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.pipelines.step import Step


class HandleMisuse(InvalidInput):
    """A step's output was used as a value while the pipeline was only being described."""

    code = "handle_misuse"


class GraphError(InvalidInput):
    """The steps of a pipeline do not form a runnable graph (a cycle, an input from nowhere, a bad call)."""

    code = "graph_error"


class Handle:
    """The future output of one step call (or one of its declared outputs)."""

    __slots__ = ("_graph", "node_id", "output")

    def __init__(self, graph: Graph, node_id: str, output: str | None) -> None:
        self._graph = graph
        self.node_id = node_id
        self.output = output  # None: the step's whole return value

    @property
    def graph(self) -> Graph:
        """The pipeline trace this handle belongs to."""
        return self._graph

    def __repr__(self) -> str:
        which = f"[{self.output!r}]" if self.output is not None else ""
        return f"<output of step {self.node_id!r}{which}>"

    def _misuse(self, what: str) -> NoReturn:
        raise HandleMisuse(
            f"{what} the output of step {self.node_id!r} while the pipeline is being described: it has no value "
            "until the pipeline runs. Pass it to another step and do the work there (branch, compute, compare)"
        )

    def __str__(self) -> str:  # noqa: PLE0307  (it never returns: it raises)
        self._misuse("cannot format")

    def __format__(self, spec: str) -> str:
        self._misuse("cannot format (in an f-string or str.format)")

    def __bool__(self) -> bool:  # noqa: PLE0304  (it never returns: it raises)
        self._misuse("cannot test the truth of")

    def __iter__(self) -> Iterator[Any]:
        self._misuse("cannot iterate over (declare `outputs=` on the step to unpack several outputs)")

    def __len__(self) -> int:  # noqa: PLE0303
        self._misuse("cannot take the length of")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._misuse(f"cannot read attribute {name!r} of")

    def __getitem__(self, key: Any) -> Any:
        self._misuse("cannot index")

    def __float__(self) -> float:
        self._misuse("cannot convert")

    def __int__(self) -> int:
        self._misuse("cannot convert")

    def __index__(self) -> int:  # noqa: PLE0305
        self._misuse("cannot use as an index")

    def __hash__(self) -> int:
        return hash((id(self._graph), self.node_id, self.output))

    def __eq__(self, other: object) -> bool:
        self._misuse("cannot compare")

    def __reduce__(self) -> Any:
        self._misuse("cannot pickle")


def _misuse_operator(symbol: str) -> Callable[..., Any]:
    def operator(self: Handle, *_: Any) -> Any:
        self._misuse(f"cannot use {symbol!r} on")

    return operator


for _name, _symbol in {
    "add": "+", "sub": "-", "mul": "*", "matmul": "@", "truediv": "/", "floordiv": "//", "mod": "%",
    "pow": "**", "and": "&", "or": "|", "xor": "^", "lshift": "<<", "rshift": ">>",
}.items():  # fmt: skip
    setattr(Handle, f"__{_name}__", _misuse_operator(_symbol))
    setattr(Handle, f"__r{_name}__", _misuse_operator(_symbol))
for _name, _symbol in {
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "ne": "!=",
    "neg": "-",
    "abs": "abs",
}.items():
    setattr(Handle, f"__{_name}__", _misuse_operator(_symbol))


@dataclass(frozen=True)
class Node:
    """One step call: the step, its arguments (handles inside), and the nodes it reads from."""

    id: str
    step: Step
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    upstream: tuple[str, ...]


class Graph:
    """The nodes recorded while a pipeline function runs in describe mode."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.nodes: dict[str, Node] = {}
        self._calls: dict[str, int] = {}

    def add(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Handle | tuple[Handle, ...]:
        """Record a call of `step`; returns its handle (or one handle per declared output)."""
        count = self._calls.get(step.name, 0) + 1
        self._calls[step.name] = count
        node_id = step.name if count == 1 else f"{step.name}#{count}"
        try:
            bound = inspect.signature(step.fn).bind(*args, **kwargs)
        except TypeError as error:
            raise GraphError(
                f"step {node_id!r} of pipeline {self.pipeline!r} cannot be called so: {error}"
            ) from None
        upstream: list[str] = []
        for handle in iter_handles((bound.args, bound.kwargs)):
            if handle.graph is not self:
                raise GraphError(
                    f"step {node_id!r} takes {handle!r}, which was made outside pipeline {self.pipeline!r} "
                    "(an input must come from a step called in the same pipeline run)"
                )
            if handle.node_id not in self.nodes:
                raise GraphError(
                    f"step {node_id!r} takes {handle!r}, which no step call of this pipeline made"
                )
            if handle.node_id not in upstream:
                upstream.append(handle.node_id)
        for name, value in bound.arguments.items():
            hidden = _hidden_handle(value)
            if hidden:
                raise GraphError(
                    f"step {node_id!r}: argument {name!r} holds a step output inside {hidden}; pass outputs "
                    "directly or inside lists, tuples and dicts (with string keys) so the step can depend on them"
                )
        step.check_literals(node_id, bound.arguments)
        # A snapshot: the pipeline body may change a list after passing it, and this call must not see that.
        frozen_args = tuple(snapshot(a) for a in args)
        frozen_kwargs = {k: snapshot(v) for k, v in kwargs.items()}
        self.nodes[node_id] = Node(node_id, step, frozen_args, frozen_kwargs, tuple(upstream))
        if step.outputs:
            return tuple(Handle(self, node_id, name) for name in step.outputs)
        return Handle(self, node_id, None)


_current: contextvars.ContextVar[Graph | None] = contextvars.ContextVar("loopml_pipeline_graph", default=None)


def current_graph() -> Graph | None:
    """The graph being described in this context, if a pipeline function is running in describe mode."""
    return _current.get()


def describing(graph: Graph) -> contextvars.Token[Graph | None]:
    """Make `graph` the one step calls record into; reset with `_current.reset(token)` via `done_describing`."""
    return _current.set(graph)


def done_describing(token: contextvars.Token[Graph | None]) -> None:
    """End describe mode started by `describing`."""
    _current.reset(token)


def iter_handles(value: Any, depth: int = 0) -> Iterator[Handle]:
    """Every handle inside `value` (lists, tuples, sets, dicts: keys are not searched)."""
    if depth > 100:
        return
    if isinstance(value, Handle):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from iter_handles(item, depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_handles(item, depth + 1)


def snapshot(value: Any) -> Any:
    """A copy of `value` that later changes to the original cannot reach (handles are kept as they are)."""
    if isinstance(value, Handle):
        return value
    if isinstance(value, list | tuple | set | frozenset | dict):
        return replace_handles(value, lambda handle: handle, leaf=copied)
    return copied(value)


def copied(value: Any) -> Any:
    """A deep copy of `value` (immutable scalars as they are; an object that cannot be copied as it is)."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _hidden_handle(value: Any, depth: int = 0) -> str | None:
    """Where a handle sits that `iter_handles` would not find: a dict key, an object's attribute."""
    if depth > 20 or isinstance(value, Handle | str | bytes | int | float | bool) or value is None:
        return None
    if isinstance(value, Mapping):
        if any(isinstance(key, Handle) for key in value):
            return "a dict key"
        items: Any = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        attributes = getattr(value, "__dict__", None)
        if not isinstance(attributes, dict):
            return None
        if any(isinstance(v, Handle) for v in attributes.values()):
            return f"an attribute of a {type(value).__qualname__}"
        items = attributes.values()
    for item in items:
        found = _hidden_handle(item, depth + 1)
        if found:
            return found
    return None


def replace_handles(
    value: Any, resolve: Callable[[Handle], Any], *, leaf: Callable[[Any], Any] | None = None
) -> Any:
    """`value` with every handle replaced by `resolve(handle)` (and other values by `leaf(value)`, if given);
    containers are rebuilt, not mutated."""
    if isinstance(value, Handle):
        return resolve(value)
    if isinstance(value, list):
        return [replace_handles(v, resolve, leaf=leaf) for v in value]
    if isinstance(value, tuple):
        items = [replace_handles(v, resolve, leaf=leaf) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, set | frozenset):
        return type(value)(replace_handles(v, resolve, leaf=leaf) for v in value)
    if isinstance(value, dict):
        return {k: replace_handles(v, resolve, leaf=leaf) for k, v in value.items()}
    return leaf(value) if leaf is not None else value


def topological_order(upstream: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Node ids so that each comes after everything it reads from; `GraphError` on a cycle or unknown node."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(node: str, path: tuple[str, ...]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = " -> ".join((*path[path.index(node) :], node))
            raise GraphError(f"the pipeline's steps form a cycle: {cycle}")
        if node not in upstream:
            raise GraphError(f"step {path[-1]!r} reads from {node!r}, which is not a step of the pipeline")
        state[node] = 1
        for parent in upstream[node]:
            visit(parent, (*path, node))
        state[node] = 2
        order.append(node)

    for node in upstream:
        visit(node, ())
    return order
