"""Which profile a model version's windows are compared with.

By default the training sample's profile the registry stored with the version. `loopml.toml` can pin
another reference: a dataset version (`transactions@v3`: its stored profile, no rows read) or a range of the
model's own past windows (`2026-11-01/2026-11-08`, UTC dates: the merge of their stored profiles), e.g. a
week the business agrees was normal.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from loopml.core.errors import InvalidInput
from loopml.monitoring.store import MonitorStore
from loopml.predictions.records import INPUT_PREFIX
from loopml.registry.loading import reference_profile_of
from loopml.registry.records import ModelVersion
from loopml.stats import TableProfile, merge

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker


def reference_for(tracker: Tracker, version: ModelVersion, pinned: str | None) -> TableProfile | None:
    """The reference profile of `version`'s windows: `pinned` when set, else the training sample's."""
    if pinned is None:
        return reference_profile_of(tracker, version)
    if "@" in pinned:
        return _dataset_profile(tracker, pinned)
    return _window_range(tracker, version.name, pinned)


def _dataset_profile(tracker: Tracker, ref: str) -> TableProfile:
    from loopml.data.catalog import DataCatalog

    catalog = DataCatalog(tracker.stores)
    found = catalog.profile(catalog.get(ref))
    if found is None:
        raise InvalidInput(f"the monitoring reference {ref} has no profile (only tables are profiled)")
    return TableProfile.from_dict(found)


def _window_range(tracker: Tracker, model: str, text: str) -> TableProfile:
    first, sep, last = text.partition("/")
    try:
        start = dt.datetime.fromisoformat(first.strip()).replace(tzinfo=dt.UTC)
        end = dt.datetime.fromisoformat(last.strip()).replace(tzinfo=dt.UTC)
    except ValueError:
        sep = ""
    if not sep or start >= end:
        raise InvalidInput(
            f"a reference range is FROM/TO in UTC dates, e.g. 2026-11-01/2026-11-08; got {text!r}"
        )
    low, high = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    windows = [
        w
        for w in MonitorStore(tracker.stores.db).windows(model, granularity="hour")
        if low <= w.start_ms and w.end_ms <= high and w.profile_digest
    ]
    if not windows:
        raise InvalidInput(
            f"no computed window of {model} lies in {text}: run `loopml monitor run {model}` first"
        )
    profiles = [
        TableProfile.from_dict(json.loads(tracker.blobs.get_bytes(w.profile_digest or ""))) for w in windows
    ]
    merged = merge(*profiles)
    names = [n for n in merged.columns if n.startswith(INPUT_PREFIX)]
    return TableProfile(
        merged.rows,
        {n[len(INPUT_PREFIX) :]: merged.columns[n] for n in names},
        {n[len(INPUT_PREFIX) :]: merged.kinds[n] for n in names},
    )
