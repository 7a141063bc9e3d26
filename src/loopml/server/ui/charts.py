"""Chart specs the pages embed as JSON (drawn by `static/loopml.js` with uPlot) and graphs laid out here
(drawn as SVG by the `graph` macro): pipeline DAGs and lineage.

    spec = line([("run a", overview_a), ("run b", overview_b)], y_label="loss")
    spec = bars(["0-1", "1-2"], [("reference", [0.4, 0.6]), ("current", [0.1, 0.9])])
    layout = graph({"split": [], "train": ["split"], "evaluate": ["train", "split"]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.tracking.metric_log import SeriesOverview

MAX_CHART_POINTS = 1000  # per series: the server downsamples longer series (bucket mean with its range)


def line(
    series: Sequence[tuple[str, SeriesOverview]], *, x_label: str = "step", y_label: str = ""
) -> dict[str, Any]:
    """Series overlaid on one chart. Series logged at different steps share one x axis (the union of their
    steps); a series has no value (a gap) at the others' steps."""
    steps = sorted({s for _, o in series for s in o.steps})
    where = {step: i for i, step in enumerate(steps)}
    drawn = []
    for label, overview in series:
        entry: dict[str, Any] = {"label": label, "values": _spread(overview.steps, overview.values, where)}
        if overview.low is not None and overview.high is not None:
            entry["low"] = _spread(overview.steps, overview.low, where)
            entry["high"] = _spread(overview.steps, overview.high, where)
        drawn.append(entry)
    return {"kind": "line", "x": steps, "x_label": x_label, "y_label": y_label, "series": drawn}


def xy(
    x: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_label: str = "",
    y_label: str = "",
    whole_x: bool = False,
) -> dict[str, Any]:
    """Series over one shared x axis (time, window index ...); `whole_x` labels only whole-number ticks
    (version numbers)."""
    drawn = [{"label": label, "values": list(values)} for label, values in series]
    return {
        "kind": "line",
        "x": list(x),
        "x_label": x_label,
        "y_label": y_label,
        "series": drawn,
        "legend": True,
        "x_integer": whole_x,
    }


def bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_label: str = "",
    y_label: str = "",
) -> dict[str, Any]:
    """Bars per label; several series overlay (reference vs current)."""
    drawn = [{"label": label, "values": list(values)} for label, values in series]
    return {
        "kind": "bars",
        "labels": [str(x) for x in labels],
        "x_label": x_label,
        "y_label": y_label,
        "series": drawn,
    }


def _spread(
    steps: Sequence[int], values: Sequence[float | None], where: Mapping[int, int]
) -> list[float | None]:
    out: list[float | None] = [None] * len(where)
    for step, value in zip(steps, values, strict=True):
        out[where[step]] = value
    return out


# -- graphs -------------------------------------------------------------------------------------------

NODE_W, NODE_H, GAP_X, GAP_Y = 170, 44, 60, 18


@dataclass
class Node:
    key: str
    label: str
    x: int = 0
    y: int = 0
    status: str = ""
    href: str = ""
    note: str = ""


@dataclass
class Graph:
    """Nodes placed in columns by depth (longest path from a source), edges as (from, to) node pairs."""

    nodes: list[Node]
    edges: list[tuple[Node, Node]]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H
    extra: dict[str, Any] = field(default_factory=dict)


def graph(upstream: Mapping[str, Sequence[str]], nodes: Mapping[str, Node] | None = None) -> Graph:
    """Lay out a DAG given each node's upstream nodes (unknown upstream names are ignored; a cycle is broken
    where it is found, so any input draws)."""
    depth = _depths(upstream)
    placed = {k: (nodes or {}).get(k) or Node(k, k) for k in upstream}
    columns: dict[int, list[str]] = {}
    for key in upstream:  # insertion order within a column: the caller's order (e.g. start time)
        columns.setdefault(depth[key], []).append(key)
    for column, keys in columns.items():
        for row, key in enumerate(keys):
            placed[key].x = 10 + column * (NODE_W + GAP_X)
            placed[key].y = 10 + row * (NODE_H + GAP_Y)
    edges = [(placed[p], placed[k]) for k, ps in upstream.items() for p in ps if p in placed and p != k]
    width = 20 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = 20 + max((len(v) for v in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return Graph(list(placed.values()), edges, width, height)


def _depths(upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each node's longest path from a source, iteratively (a pipeline may chain thousands of steps); nodes
    left on a cycle go after everything else."""
    parents = {k: [p for p in dict.fromkeys(ps) if p in upstream and p != k] for k, ps in upstream.items()}
    children: dict[str, list[str]] = {k: [] for k in upstream}
    waiting = {k: len(ps) for k, ps in parents.items()}
    for key, ps in parents.items():
        for parent in ps:
            children[parent].append(key)
    depth = {k: 0 for k, n in waiting.items() if n == 0}
    ready = list(depth)
    while ready:
        key = ready.pop()
        for child in children[key]:
            depth[child] = max(depth.get(child, 0), depth[key] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    last = max(depth.values(), default=-1) + 1
    return {k: depth.get(k, last) for k in upstream}
