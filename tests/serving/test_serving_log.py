"""Serving writes every prediction to the prediction log (champion, challenger and shadow), and /feedback
labels join them by prediction id."""

from __future__ import annotations

import time
from typing import Any

import loopml
from conftest import LiveServer
from loopml.monitoring.metrics import window_metrics
from loopml.predictions import predictions_with_labels, read_predictions
from loopml.tracking.tracker import Tracker

JSON = {"content-type": "application/json"}
ROWS = [{"amount": 120.0, "age": 30, "channel": "web"}, {"amount": 70.0, "age": 55, "channel": "phone"}]


def test_predictions_are_logged_with_their_ids_and_labels_join_later(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve(redact=("age",))
    with live.client() as client:
        listed = client.post(
            "/predict/fraud", json={"records": ROWS, "prediction_ids": ["order-1", "order-2"]}
        )
        headed = client.post(
            "/v2/models/fraud/infer", json=_oip(ROWS[:1]), headers={"X-Prediction-Id": "order-3"}
        )
        assert listed.status_code == headed.status_code == 200
        labels = {
            "model": "fraud",
            "labels": [{"prediction_id": "order-1", "label": 1}, {"prediction_id": "order-3", "label": 0}],
        }
        recorded = client.post("/feedback", json=labels)
        assert recorded.json() == {"recorded": 2}
    assert live.app.state.server.log.flush(timeout_s=30)
    logged = read_predictions(project, "fraud")
    assert sorted(logged["prediction_id"]) == ["order-1", "order-2", "order-3"]
    assert set(logged["route"]) == {"champion"}
    assert set(logged["version"]) == {1}
    assert "in.amount" in logged.columns
    assert "in.age" not in logged.columns  # redacted by the serving policy
    first = logged.set_index("prediction_id").loc["order-1"]
    proba = listed.json()["predictions"][0]["probabilities"]["1"]
    assert abs(first["out.proba_1"] - proba) < 1e-9
    joined = predictions_with_labels(project, "fraud", labelled_only=True).set_index("prediction_id")
    assert joined["label"].to_dict() == {"order-1": 1, "order-3": 0}


def test_shadow_and_canary_predictions_are_logged_under_their_routes(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    loopml.models.deploy("fraud", challenger="challenger", mode="shadow", share=1.0, tracker=project)
    live.app.state.server.pool.refresh()
    with live.client() as client:
        for i in range(5):
            assert (
                client.post("/predict/fraud", json=ROWS[:1], headers={"X-Prediction-Id": f"p{i}"}).status_code
                == 200
            )
    server = live.app.state.server
    server.mirror.close()  # the shadow predictions queued so far have run
    assert server.log.flush(timeout_s=30)
    logged = read_predictions(project, "fraud")
    by_route = logged.groupby("route")["prediction_id"].apply(sorted).to_dict()
    assert by_route == {"champion": [f"p{i}" for i in range(5)], "shadow": [f"p{i}" for i in range(5)]}
    assert set(logged[logged["route"] == "shadow"]["version"]) == {2}


def test_bad_feedback_is_refused_whole(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        for body, message in (
            ({"labels": [{"prediction_id": "", "label": 1}]}, "item 0"),
            ({"labels": [{"prediction_id": "a"}]}, "exactly prediction_id and label"),
            ({"labels": [], "model": "fraud"}, "no feedback"),
            ({"labels": [{"prediction_id": "a", "label": 1}], "model": "other"}, "not served here"),
            ({"label": 1}, "feedback is"),
        ):
            answer = client.post("/feedback", json=body)
            assert answer.status_code == 400, body
            assert message in answer.json()["error"]
    assert predictions_with_labels(project, "fraud", labelled_only=True).empty


def _oip(rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = {"amount": "FP64", "age": "INT64", "channel": "BYTES"}
    return {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": kind, "data": [r[name] for r in rows]}
            for name, kind in types.items()
        ]
    }


def test_failed_requests_are_counted_and_give_the_window_its_error_rate(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        for _ in range(6):
            assert client.post("/predict/fraud", json=ROWS[:1]).status_code == 200
        assert client.post("/predict/fraud", json=[{"amount": "lots"}]).status_code == 400
        assert client.post("/predict/fraud", content=b"{not json", headers=JSON).status_code == 400
    assert live.app.state.server.log.flush(timeout_s=30)
    windows = loopml.monitoring.run(project, "fraud", now_ms=int(time.time() * 1000) + 2 * 3_600_000)
    assert len(windows) in (1, 2)  # the requests may straddle an hour
    counted = [w.quality["requests"] for w in windows]
    assert sum(c["requests"] for c in counted) == 8
    assert sum(c["client_errors"] for c in counted) == 2
    assert sum(c["server_errors"] for c in counted) == 0
    metrics = window_metrics(windows[-1])
    assert 0 < metrics["errors.rate"] <= 1
    assert metrics["errors.server_rate"] == 0
