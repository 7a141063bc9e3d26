"""The drift heatmap of the monitoring pages: features (rows) x windows (columns, oldest left), each cell
coloured by the feature's drift score relative to its threshold, laid out here and drawn as SVG by the
`heatmap` macro of `monitoring_macros.html`; and the small formatting helpers the monitoring pages share.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.monitoring.report import relative_score
from loopml.monitoring.store import WindowRecord
from loopml.stats.drift_config import TEST_METHODS

MAX_FEATURES = 40  # heatmap rows and distribution charts; the rest are listed
# Heatmap geometry (px): a label column, then one cell per window.
CELL_W, CELL_H, LABEL_W, TOP, BOTTOM, TICK_EVERY_PX = 16, 16, 170, 6, 34, 84
NOT_COMPARED = "#e5e7eb"
# Drift colour by score relative to its threshold (1 = threshold): white, amber towards it, red past it.
STOPS = ((0.0, (255, 255, 255)), (0.5, (254, 243, 199)), (1.0, (245, 158, 11)), (2.0, (185, 28, 28)))


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: a feature's drift in one window."""

    y: int
    fill: str
    title: str
    drifted: bool
    compared: bool
    feature: str


@dataclass(frozen=True)
class Column:
    """One window's column of the heatmap; a click on any of its cells opens the window."""

    x: int
    window_id: str
    href: str
    cells: list[Cell]


@dataclass(frozen=True)
class Heatmap:
    """Features (rows) x windows (columns, oldest left), laid out for the `heatmap` macro."""

    rows: list[tuple[str, int]]  # feature, y of its row's middle
    ticks: list[tuple[str, int]]  # window label, x of its column's middle
    columns: list[Column]
    width: int
    height: int
    cell_w: int = CELL_W
    cell_h: int = CELL_H
    label_w: int = LABEL_W
    hidden: list[str] = field(default_factory=list)  # features not drawn (beyond MAX_FEATURES)


def heatmap(
    windows: Sequence[WindowRecord], href: Callable[[WindowRecord], str], *, several: bool
) -> Heatmap:
    """The drift of each feature (rows, at most MAX_FEATURES: the most drifted) in each window (columns)."""
    names: list[str] = []
    for w in windows:
        names += [n for n in (w.drift or {}).get("columns", {}) if n not in names]
    drawn = _most_drifted(names, windows)
    rows = [(name, TOP + i * CELL_H + CELL_H // 2) for i, name in enumerate(drawn)]
    columns = []
    for j, w in enumerate(windows):
        results = (w.drift or {}).get("columns", {})
        when = when_text(w.start_ms, w.granularity) + (f" v{w.version}" if several else "")
        cells = [_cell(name, results.get(name), when, TOP + i * CELL_H) for i, name in enumerate(drawn)]
        columns.append(Column(LABEL_W + j * CELL_W, w.window_id, href(w), cells))
    step = max(1, math.ceil(TICK_EVERY_PX / CELL_W))
    # Labelled from the newest back, so the newest column always has its time under it.
    ticks = [
        (
            column_label(windows[j], windows[j].granularity, several=several),
            LABEL_W + j * CELL_W + CELL_W // 2,
        )
        for j in range(len(windows) - 1, -1, -step)
    ]
    return Heatmap(
        rows=rows,
        ticks=ticks,
        columns=columns,
        width=LABEL_W + len(windows) * CELL_W + 50,
        height=TOP + len(drawn) * CELL_H + BOTTOM,
        hidden=[n for n in names if n not in drawn],
    )


def _most_drifted(names: list[str], windows: Sequence[WindowRecord]) -> list[str]:
    """At most MAX_FEATURES names, in their own order: those drifted in the most windows, then the highest."""
    if len(names) <= MAX_FEATURES:
        return names

    def weight(name: str) -> tuple[int, float]:
        results = [(w.drift or {}).get("columns", {}).get(name) or {} for w in windows]
        scores = [relative_of(r) for r in results]
        return sum(bool(r.get("drifted")) for r in results), max(
            (s for s in scores if s is not None), default=0
        )

    chosen = set(sorted(names, key=weight, reverse=True)[:MAX_FEATURES])
    return [n for n in names if n in chosen]


def _cell(name: str, result: dict[str, Any] | None, when: str, y: int) -> Cell:
    relative = None if result is None else relative_of(result)
    if result is None:
        title = f"{name} · {when}: not in this window's drift report"
    elif relative is None:
        title = f"{name} · {when}: {result.get('status') or 'not compared'}" + (
            f" ({result['note']})" if result.get("note") else ""
        )
    else:
        verdict = "DRIFTED" if result.get("drifted") else "no drift"
        what = "p-value" if is_test(result) else "distance"
        title = (
            f"{name} · {when}: {verdict}; {result.get('method')} {what} {number_text(result.get('score'))} "
            f"(threshold {number_text(result.get('threshold'))})"
        )
    return Cell(
        y=y,
        fill=drift_colour(relative),
        title=title,
        drifted=bool(result and result.get("drifted")),
        compared=relative is not None,
        feature=name,
    )


def drift_colour(relative: float | None) -> str:
    """The heatmap colour of a score relative to its threshold (None: not compared, grey)."""
    if relative is None:
        return NOT_COMPARED
    value = min(max(relative, 0.0), STOPS[-1][0])
    for (low, a), (high, b) in itertools.pairwise(STOPS):
        if value <= high:
            t = (value - low) / (high - low)
            return "#" + "".join(f"{round(ca + (cb - ca) * t):02x}" for ca, cb in zip(a, b, strict=True))
    return "#" + "".join(f"{c:02x}" for c in STOPS[-1][1])


LEGEND = [
    (drift_colour(0.0), "0"),
    (drift_colour(0.5), "half the threshold"),
    (drift_colour(1.0), "at the threshold"),
    (drift_colour(1.5), "1.5x"),
    (drift_colour(2.0), "2x or more"),
    (NOT_COMPARED, "not compared"),
]


def relative_of(result: dict[str, Any]) -> float | None:
    if result.get("status") not in (None, "ok", "drifted"):
        return None
    return relative_score(result.get("method"), finite(result.get("score")), result.get("threshold"))


def is_test(result: dict[str, Any]) -> bool:
    return result.get("method") in TEST_METHODS


def when_text(ms: int, granularity: str) -> str:
    pattern = "%Y-%m-%d" if granularity == "day" else "%Y-%m-%d %H:%M"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime(pattern) + " UTC"


def column_label(window: WindowRecord, granularity: str, *, several: bool) -> str:
    """A short column label: a day's date, an hour's or a minute's day and time."""
    pattern = "%Y-%m-%d" if granularity == "day" else "%m-%d %H:%M"
    text = dt.datetime.fromtimestamp(window.start_ms / 1000, tz=dt.UTC).strftime(pattern)
    return f"{text} v{window.version}" if several else text


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def number_text(value: Any) -> str:
    number = finite(value)
    return "" if number is None else f"{number:.4g}"
