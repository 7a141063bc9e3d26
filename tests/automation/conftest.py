"""Fixtures of the automation tests: a project with a toy training pipeline, a first champion, and a clock
the tests move by hand (no sleeping for schedules or canaries)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml.automation.controller import Controller
from loopml.tracking.tracker import Tracker

PIPELINE = '''
"""A toy training pipeline for the automation tests."""

import time

import numpy as np

import loopml
from loopml.pipelines import library as lib
from loopml.pipelines.inputs import DatasetRef


@loopml.step
def prepare(frame, fail: bool, sleep_s: float):
    time.sleep(sleep_s)
    if fail:
        raise RuntimeError("the training data is broken")
    return frame


@loopml.step
def scramble(frame, scrambled: bool):
    if not scrambled:
        return frame
    out = frame.copy()
    out["y"] = np.random.default_rng(0).permutation(out["y"].to_numpy())
    return out


@loopml.pipeline(experiment="toy")
def train_toy(
    data: DatasetRef = "toy@latest",
    depth: int = 6,
    scrambled: bool = False,
    fail: bool = False,
    sleep_s: float = 0.0,
):
    frame = prepare(lib.load_dataset(data), fail, sleep_s)
    train, test = lib.split_data(frame, target="y", method="random", register_as="toy_holdout", seed=0)
    model = lib.train_model(
        scramble(train, scrambled),
        target="y",
        estimator="RandomForestClassifier",
        params={"max_depth": depth, "n_estimators": 15},
    )
    return {"model": lib.register_model(model, train, name="toy", target="y")}
'''

START = int(datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp() * 1000)


def toy_rows(rows: int, seed: int) -> pd.DataFrame:
    """Rows of a learnable binary problem; each seed gives fresh rows (so held-out rows never overlap)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    score = 1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"])
    frame["y"] = (score > 0).astype(int)
    return frame


@dataclass
class Clock:
    """Epoch milliseconds that move only when a test says so."""

    now: int = START

    def __call__(self) -> int:
        return self.now

    def advance(self, *, minutes: float = 0, hours: float = 0) -> int:
        self.now += int((minutes * 60 + hours * 3600) * 1000)
        return self.now


@dataclass
class Project:
    """A project folder with the toy pipeline, its tracker, and `loopml.toml` written by the test."""

    folder: Path
    tracker: Tracker
    clock: Clock

    def policy(
        self, automation: str, *, extra: str = "", pipeline: str = "toy_pipeline.py:train_toy"
    ) -> None:
        """Write `[models.toy.automation]` (and any other TOML) to the project's loopml.toml."""
        body = textwrap.dedent(automation).strip()
        (self.folder / "loopml.toml").write_text(
            f'[models.toy.automation]\npipeline = "{pipeline}"\ndata = "toy"\n'
            + body
            + "\n"
            + textwrap.dedent(extra)
        )

    def controller(self, **options: Any) -> Controller:
        return Controller(self.tracker, clock=self.clock, monitor=False, **options)

    def kinds(self) -> list[str]:
        from loopml.automation.store import AutomationStore

        return [e.kind for e in AutomationStore(self.tracker.stores.db).events("toy")]


@pytest.fixture
def project(sqlite_tracker: Tracker, tmp_path: Path) -> Iterator[Project]:
    """The toy project with dataset `toy` v1 and a weak first champion (toy v1, trained on scrambled labels)."""
    yield from _project(sqlite_tracker, tmp_path)


@pytest.fixture
def any_project(tracker: Tracker, tmp_path: Path) -> Iterator[Project]:
    """The same on SQLite and on PostgreSQL."""
    yield from _project(tracker, tmp_path)


def _project(tracker: Tracker, folder: Path) -> Iterator[Project]:
    (folder / "toy_pipeline.py").write_text(PIPELINE)
    from loopml.automation.controller import load_policy_pipeline

    loopml.datasets.add("toy", toy_rows(600, seed=1), tracker=tracker)
    pipeline = load_policy_pipeline(folder, "toy_pipeline.py:train_toy")
    pipeline.run({"scrambled": True}, tracker=tracker)
    loopml.models.promote("toy", 1, reason="first champion", tracker=tracker)
    yield Project(folder, tracker, Clock())
