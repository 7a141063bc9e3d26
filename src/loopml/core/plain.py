"""Records as JSON-able values: what the CLI's `--json` and the team server's responses both print."""

from __future__ import annotations

import dataclasses
import math
from enum import Enum
from typing import Any


def to_plain(value: Any) -> Any:
    """Records -> JSON-able dicts; NaN/inf become strings JSON can carry."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
