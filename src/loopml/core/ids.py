"""Identifiers: random, URL-safe, sortable enough to read; never derived from user input."""

from __future__ import annotations

import re
import uuid
from typing import NewType

RunId = NewType("RunId", str)
ExperimentId = NewType("ExperimentId", str)

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A fresh 32-hex-digit identifier (a UUID4 without dashes, as MLflow's run ids)."""
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    """True when `value` has the shape of an id made by `new_id`."""
    return bool(_ID.match(value))
