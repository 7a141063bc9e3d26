"""How the CLI shows things: Rich tables for people, `--json` for scripts, one-line errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loopml.core.plain import to_plain

console = Console()
errors = Console(stderr=True)


def print_json(value: Any) -> None:
    """Write `value` as JSON to stdout (no Rich markup, so it can be piped)."""
    sys.stdout.write(json.dumps(to_plain(value), indent=2, sort_keys=True) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Rich table."""
    view = Table(title=escape(title) if title else None, show_lines=False, header_style="bold")
    for index, column in enumerate(columns):
        # The first column names the row (a run id, a key): keep it whole so it can be copied.
        view.add_column(escape(column), overflow="fold", no_wrap=index == 0)
    for row in rows:
        view.add_row(*[cell if isinstance(cell, Styled) else escape(fmt(cell)) for cell in row])
    console.print(view)


class Styled(str):
    """A table cell that carries Rich markup on purpose; every other cell is shown literally."""

    __slots__ = ()


def fmt(value: Any) -> str:
    """Short human form of a cell value."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def when(ms: int | None) -> str:
    """A millisecond timestamp as local date and time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """A duration in ms as a short human string."""
    if ms is None:
        return "-"
    seconds = ms / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"
