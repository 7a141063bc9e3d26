"""Data and models for the Ray batch-scoring tests; a module of its own so Ray's workers can import it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def rows(count: int, seed: int = 0) -> pd.DataFrame:
    """`customer` (an id), `amount`, `age` and `channel`, as the models below take them."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer": [f"c{seed}-{i}" for i in range(count)],
            "amount": np.round(rng.normal(100, 20, count), 2),
            "age": rng.integers(18, 80, count),
            "channel": rng.choice(["web", "shop", "phone"], count),
        }
    )


def fraud_model(frame: pd.DataFrame) -> Pipeline:
    """A classifier on amount, age and channel (a category), fitted on `frame`."""
    label = ((frame["amount"] > 100) ^ (frame["channel"] == "phone")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=1000))]).fit(frame, label)


def write_parts(frame: pd.DataFrame, folder: Path, parts: int) -> list[Path]:
    """`frame` split into `parts` Parquet files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = folder / f"part-{i}.parquet"
        frame.iloc[part].reset_index(drop=True).to_parquet(path, row_group_size=97)
        paths.append(path)
    return paths


class CountingModel:
    """A python-flavor model that appends its process id to `log` each time it is built (= loaded)."""

    def __init__(self, log: str, threshold: float = 100.0) -> None:
        self.log = log
        self.threshold = threshold
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(f"{os.getpid()}\n")

    def get_params(self) -> dict[str, Any]:
        return {"log": self.log, "threshold": self.threshold}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["amount"].to_numpy() > self.threshold).astype(np.int64)
