"""Micro-batching over real HTTP: concurrent single-row requests run as one model call, answers stay per request."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conftest import LiveServer
from loopml.core.errors import InvalidInput
from loopml.serving.batching import BatchPolicy

ROWS = [
    {"amount": 60.0 + 5 * i, "age": 20 + i, "channel": ("web", "shop", "phone")[i % 3]} for i in range(16)
]


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_rows(serve: Any) -> None:
    live: LiveServer = serve(batching={"fraud": BatchPolicy(max_batch_size=16, max_wait_ms=200)})
    with live.client() as client:
        alone = [client.post("/predict/fraud", json=[row]).json()["predictions"][0] for row in ROWS[:2]]
    server = live.app.state.server
    batcher = next(iter(server._batchers.values()))
    calls_before = batcher.batches
    answers: dict[int, Any] = {}
    start = threading.Barrier(len(ROWS))

    def ask(i: int) -> None:
        with live.client() as client:
            start.wait()
            answers[i] = client.post(
                "/predict/fraud", json=[ROWS[i]], headers={"X-Prediction-Id": f"row-{i}"}
            )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(ROWS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(answers[i].status_code == 200 for i in range(len(ROWS)))
    calls = batcher.batches - calls_before
    assert calls < len(ROWS)  # 16 requests in 200 ms windows: far fewer model calls than requests
    for i in range(len(ROWS)):
        prediction = answers[i].json()["predictions"][0]
        assert prediction["prediction_id"] == f"row-{i}"
    for i in range(2):  # batched answers equal the unbatched ones, row for row
        assert answers[i].json()["predictions"][0]["probabilities"] == pytest.approx(
            alone[i]["probabilities"]
        )
    with live.client() as client:
        metrics = client.get("/metrics").text
    assert 'loopml_batch_rows_count{model="fraud",version="1"}' in metrics


def test_a_bad_request_fails_alone_and_mlflow_answers_keep_their_shape(serve: Any) -> None:
    live: LiveServer = serve(batching={"fraud": BatchPolicy(max_batch_size=8, max_wait_ms=1)})
    with live.client() as client:
        bad = client.post("/predict/fraud", json=[{"amount": "x", "age": 1, "channel": "web"}])
        good = client.post("/invocations", json={"dataframe_records": ROWS[:3]})
    assert bad.status_code == 400
    assert good.status_code == 200
    assert len(good.json()["predictions"]) == 3
    assert all(p in (0, 1) for p in good.json()["predictions"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fraud:0:2", "positive integer"),
        ("fraud:8:-1", "from 0 to 10000"),
        ("fraud:8", "NAME:MAX"),
        (":8:1", "NAME:MAX"),
    ],
)
def test_batch_policies_are_checked(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        BatchPolicy.parse(text)
    assert BatchPolicy.parse("fraud:32:1.5") == ("fraud", BatchPolicy(32, 1.5))
