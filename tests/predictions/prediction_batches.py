"""Helpers of the prediction log tests: deterministic feature rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loopml.predictions import PredictionBatch

MakeBatch = Callable[..., PredictionBatch]


def features(rows: int) -> pd.DataFrame:
    """Row i is the same whatever `rows` is, so a batch of rows [a, b) is `features(b).iloc[a:]`."""
    index = np.arange(rows)
    return pd.DataFrame(
        {
            "amount": np.round(80 + 40 * np.sin(index), 3),
            "age": 18 + (index * 7) % 60,
            "email": [f"user{i % 4}@example.com" for i in range(rows)],
        }
    )
