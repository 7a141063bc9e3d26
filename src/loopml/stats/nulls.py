"""What counts as a missing value in an object column, decided without importing pandas."""

from __future__ import annotations

import math

import numpy as np

_PANDAS_MISSING = frozenset({"NAType", "NaTType"})  # pandas.NA and pandas.NaT, told apart by type name


def is_null(value: object) -> bool:
    """True for None, float NaN (Python or numpy), numpy NaT, pandas NA and pandas NaT."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return type(value).__name__ in _PANDAS_MISSING
