"""Wall-clock time in the one unit the stores use: integer milliseconds since the Unix epoch."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch, as stored in every timestamp column."""
    return time.time_ns() // 1_000_000
