"""Small helpers shared by the automation tests."""

from __future__ import annotations

from typing import Any

from loopml.registry.store import RegistryStore


def champion(project: Any) -> int | None:
    """The version the toy model's champion alias points at."""
    return RegistryStore(project.tracker.stores.db).get_model("toy").aliases.get("champion")


def traffic(
    project: Any,
    *,
    version: int,
    route: str,
    rows: int,
    time_ms: int,
    failed: int = 0,
    accuracy: float | None = None,
    latency_ms: float = 2.0,
    prefix: str | None = None,
) -> list[str]:
    """Log `rows` answered predictions of `version` on `route` (and `failed` failed requests) at `time_ms`,
    as a server would; with `accuracy`, labels come back and that share of the predictions is right."""
    import numpy as np
    import pandas as pd

    from loopml.predictions import PredictionBatch, PredictionLog, record_feedback

    rng = np.random.default_rng(version * 1000 + rows)
    # Requests of a shadow share their ids with the champion's (`prefix`): both versions answered them.
    ids = [f"{prefix}-{time_ms}-{i}" if prefix else f"{route}-{version}-{time_ms}-{i}" for i in range(rows)]
    predicted = rng.integers(0, 2, size=rows)
    log = PredictionLog(project.tracker)
    try:
        for i, pid in enumerate(ids):
            log.append(
                PredictionBatch(
                    model="toy",
                    version=version,
                    route=route,
                    prediction_ids=[pid],
                    inputs=pd.DataFrame(rng.normal(size=(1, 4)), columns=["x0", "x1", "x2", "x3"]),
                    outputs={"prediction": predicted[i : i + 1], "proba_1": predicted[i : i + 1] * 0.8 + 0.1},
                    time_ms=time_ms + i,
                    latency_ms=latency_ms,
                )
            )
            log.count_request("toy", version, time_ms + i, 200)
        for i in range(failed):
            log.count_request("toy", version, time_ms + i, 500)
        assert log.flush(timeout_s=60)
    finally:
        log.close()
    if accuracy is not None:
        right = rng.random(rows) < accuracy
        labels = [
            (pid, int(p) if ok else 1 - int(p)) for pid, p, ok in zip(ids, predicted, right, strict=True)
        ]
        record_feedback(project.tracker, labels, "toy")
    return ids
