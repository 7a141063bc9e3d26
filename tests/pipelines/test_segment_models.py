"""Many models in one pipeline: a map over segments trains and registers one model version per region."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.pipelines import library as lib
from loopml.pipelines.records import StepStatus
from loopml.registry.store import RegistryStore
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker

REGIONS = ["north", "south", "east"]


@loopml.step
def sales() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = 300
    frame = pd.DataFrame(
        {
            "region": rng.choice(REGIONS, size=rows),
            "price": rng.uniform(1.0, 10.0, size=rows),
            "promo": rng.integers(0, 2, size=rows).astype(float),
        }
    )
    slope = frame["region"].map({"north": 2.0, "south": -1.0, "east": 0.5})  # each region its own demand
    frame["units"] = slope * frame["price"] + 3.0 * frame["promo"] + rng.normal(0, 0.1, size=rows)
    return frame


@loopml.step
def segment(frame: pd.DataFrame, region: str) -> pd.DataFrame:
    return frame[frame["region"] == region].drop(columns=["region"]).reset_index(drop=True)


@loopml.pipeline
def per_region(regions: list[str] = REGIONS) -> Any:
    frame = sales()
    versions = {}
    for region in regions:  # the map: one branch per segment, run in parallel by the executor
        part = segment(frame, region)
        model = lib.train_model(part, target="units", estimator="LinearRegression")
        versions[region] = lib.register_model(model, part, name=f"demand-{region}", target="units")
    return versions


def test_a_map_over_segments_registers_one_model_version_per_segment(tracker: Tracker) -> None:
    result = per_region.run()
    assert result.value == {region: f"demand-{region}@v1" for region in REGIONS}
    registry = RegistryStore(tracker.stores.db) if not tracker.remote else None
    models = {region: loopml.models.load(f"demand-{region}@v1") for region in REGIONS}
    probe = pd.DataFrame({"price": [4.0], "promo": [0.0]})
    predicted = {region: float(model.predict(probe)[0]) for region, model in models.items()}
    assert predicted["north"] > 7.5 > 0 > predicted["south"]  # each model learned its own region
    steps = {s.node: s for s in result.record.steps}
    assert {n for n in steps if n.startswith("train_model")} == {
        "train_model",
        "train_model#2",
        "train_model#3",
    }
    client = Client(tracker)
    for node in ("register_model", "register_model#2", "register_model#3"):
        run = client.get_run(steps[node].run_id or "")
        assert run.parent_run_id == result.run_id
    if registry is not None:
        version = registry.get_version("demand-south@v1")
        assert version.run_id == steps["register_model#2"].run_id  # lineage: version -> the run that made it

    again = per_region.run()  # nothing changed: the training is served from the cache, no new versions
    assert again.value == result.value
    statuses = {s.node: s.status for s in again.record.steps}
    assert statuses["train_model#3"] is StepStatus.CACHED
