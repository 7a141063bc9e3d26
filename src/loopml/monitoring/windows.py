"""Tumbling time windows over the prediction log: which windows of a model version are closed and due.

Windows are aligned to UTC (an hour starts at :00, a day at 00:00 UTC), so every server and every run of
`loopml monitor run` cuts the same windows, and a window is computed once. A window is closed when its end is
older than `grace_ms`: serving closes a log segment at most `max_age_s` (60 s) after its last row, so by then
every prediction of the window is in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loopml.core.errors import InvalidInput

# Minutes are for demos and very busy models; hours are the default, days are merged from hours.
GRANULARITY_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
DEFAULT_GRACE_MS = 180_000  # the log's segment age (60 s) plus margin for a busy writer


@dataclass(frozen=True, order=True)
class Window:
    """[start_ms, end_ms) of one version's predictions."""

    version: int
    start_ms: int
    end_ms: int


def step_of(granularity: str) -> int:
    """The length of a window in milliseconds; `InvalidInput` for an unknown granularity."""
    try:
        return GRANULARITY_MS[granularity]
    except KeyError:
        raise InvalidInput(
            f"granularity must be one of {', '.join(GRANULARITY_MS)}, got {granularity!r}"
        ) from None


def due_windows(
    spans: Iterable[tuple[int, int, int]],
    *,
    granularity: str,
    now_ms: int,
    done: set[tuple[int, int]],
    grace_ms: int = DEFAULT_GRACE_MS,
) -> list[Window]:
    """Closed windows holding predictions and not yet computed, oldest first.

    `spans`: (version, first, last) prediction times of each log segment; `done`: (version, start) of the
    windows already computed.
    """
    step = step_of(granularity)
    starts: set[tuple[int, int]] = set()
    for version, first, last in spans:
        start = first - first % step
        while start <= last:
            starts.add((version, start))
            start += step
    due = [
        Window(version, start, start + step)
        for version, start in starts
        if start + step + grace_ms <= now_ms and (version, start) not in done
    ]
    return sorted(due, key=lambda w: (w.start_ms, w.version))
