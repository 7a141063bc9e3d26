"""The serving app over real HTTP: every wire format, validation errors, limits, auth and version swaps."""

from __future__ import annotations

import json
import shutil
import threading
from typing import Any

import httpx
import pytest

import loopml
from conftest import LiveServer, classifier, training_frame
from loopml.serving.predictor import ValidationPolicy
from loopml.tracking.tracker import Tracker

ROW = {"amount": 120.0, "age": 30, "channel": "web"}


def oip_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = {"amount": "FP64", "age": "INT64", "channel": "BYTES"}
    return {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": kind, "data": [r[name] for r in rows]}
            for name, kind in types.items()
        ]
    }


def reference_proba(tracker: Tracker, ref: str, rows: list[dict[str, Any]]) -> list[float]:
    import pandas as pd

    model = loopml.models.load(ref, tracker=tracker)
    frame = pd.DataFrame(rows).astype({"channel": pd.CategoricalDtype(["phone", "shop", "web"])})
    return [float(p) for p in model.predict_proba(frame)[:, 1]]


def test_every_format_answers_with_the_champion_and_says_which_version(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    rows = [ROW, {"amount": 80.0, "age": 60, "channel": "phone"}]
    expected = reference_proba(project, "fraud@champion", rows)
    with live.client() as client:
        predicted = client.post("/predict/fraud", json=rows)
        assert predicted.status_code == 200, predicted.text
        assert predicted.headers["x-model-version"] == "1"
        body = predicted.json()
        assert body["model_version"] == 1
        assert [p["probabilities"]["1"] for p in body["predictions"]] == pytest.approx(expected, abs=1e-5)
        request_id = predicted.headers["x-request-id"]
        assert [p["prediction_id"] for p in body["predictions"]] == [f"{request_id}-0", f"{request_id}-1"]

        infer = client.post("/v2/models/fraud/infer", json=oip_columns(rows))
        assert infer.status_code == 200, infer.text
        outputs = {o["name"]: o for o in infer.json()["outputs"]}
        assert outputs["proba_1"]["data"] == pytest.approx(expected, abs=1e-5)
        assert outputs["prediction"]["shape"] == [2]
        assert infer.json()["model_version"] == "1"

        split = {"columns": list(ROW), "data": [list(r.values()) for r in rows]}
        for document in (
            {"dataframe_split": split},
            {"dataframe_records": rows},
            {"instances": rows},
            {"inputs": {k: [r[k] for r in rows] for k in ROW}},
        ):
            mlflow = client.post("/invocations", json=document)
            assert mlflow.status_code == 200, (document, mlflow.text)
            assert mlflow.json() == {"predictions": [int(p >= 0.5) for p in expected]}
        csv = "amount,age,channel\n120.0,30,web\n80.0,60,phone\n"
        answered = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
        assert answered.json() == {"predictions": [int(p >= 0.5) for p in expected]}

        pinned = client.post("/v2/models/fraud/versions/2/infer", json=oip_columns(rows))
        assert pinned.headers["x-model-version"] == "2"
        assert {o["name"]: o for o in pinned.json()["outputs"]}["proba_1"]["data"] == pytest.approx(
            reference_proba(project, "fraud@v2", rows), abs=1e-5
        )


def test_metadata_and_health_follow_the_open_inference_protocol(serve: Any) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}
        assert client.get("/ping").status_code == 200
        metadata = client.get("/v2/models/fraud").json()
        assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
            ("amount", "FP64"),
            ("age", "INT64"),
            ("channel", "BYTES"),
        ]
        assert [o["name"] for o in metadata["outputs"]] == ["prediction", "proba_0", "proba_1"]
        assert client.get("/v2/models/fraud/versions/2").json()["versions"] == ["2"]
        assert client.get("/v2/models/nope").status_code == 404
        assert client.get("/v2/models/fraud/versions/9").status_code == 404
        assert "no route" in client.get("/nowhere").json()["error"]


def test_a_2d_tensor_in_signature_order_is_one_row_per_line(serve: Any) -> None:
    live: LiveServer = serve()
    tensor = {"name": "input-0", "shape": [1, 3], "datatype": "BYTES", "data": [["120.0", "30", "web"]]}
    with live.client() as client:
        refused = client.post("/v2/models/fraud/infer", json={"inputs": [tensor]})
        assert refused.status_code == 400  # strings are not numbers: the signature says so, per column
        assert {p["column"] for p in refused.json()["problems"]} == {"amount", "age"}
        # Numbers only (no category column): a model of numbers takes one FP64 tensor.
        tensor = {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}
        wrong = client.post("/v2/models/fraud/infer", json={"inputs": [tensor]})
        assert wrong.status_code == 400
        assert "has 2 columns; the model takes 3" in wrong.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/predict/fraud", b"{not json", 400, "not valid JSON"),
        ("/predict/fraud", b"", 400, "body is empty"),
        ("/predict/fraud", b"[]", 400, "no rows"),
        ("/predict/fraud", b"[1, 2]", 400, "not objects"),
        ("/predict/nope", json.dumps([ROW]).encode(), 404, "not served here"),
        (
            "/predict/fraud",
            json.dumps({"records": [ROW], "prediction_ids": ["a", "b"]}).encode(),
            400,
            "2 prediction",
        ),
        ("/v2/models/fraud/infer", b'{"inputs": []}', 400, "non-empty list"),
        ("/v2/models/fraud/infer", b'{"inputs": [{"name": "amount"}]}', 400, "lacks shape, datatype, data"),
        (
            "/v2/models/fraud/infer",
            b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0]}]}',
            400,
            "needs 2 values",
        ),
        (
            "/v2/models/fraud/infer",
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": ["x"]}]}',
            400,
            "is not FP64",
        ),
        ("/v2/models/fraud/versions/x/infer", b"{}", 400, "positive integer"),
        ("/invocations", b'{"dataframe_records": [], "instances": []}', 400, "exactly one of"),
        ("/invocations", b'{"columns": []}', 400, "exactly one of"),
    ],
)
def test_bad_requests_get_a_4xx_json_message(
    serve: Any, path: str, body: bytes, status: int, message: str
) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_validation_lists_every_problem_by_column(serve: Any) -> None:
    live: LiveServer = serve(policy=ValidationPolicy(unseen_levels="reject"))
    rows = [
        {"amount": "lots", "age": 30.5, "channel": "fax", "extra": 1},
        {"amount": None, "age": 2, "channel": "web"},
    ]
    with live.client() as client:
        answer = client.post("/predict/fraud", json=rows)
    assert answer.status_code == 400
    problems = {(p["column"], p["problem"]) for p in answer.json()["problems"]}
    assert problems >= {
        ("amount", "type"),
        ("age", "type"),
        ("channel", "unseen_level"),
        ("extra", "unexpected"),
    }


def test_mlflow_errors_carry_mlflow_error_codes_and_other_media_types_get_415(serve: Any) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        bad = client.post("/invocations", json={"dataframe_records": [{"amount": "x"}]})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "BAD_REQUEST"
        assert "amount" in bad.json()["message"]
        xml = client.post("/invocations", content=b"<a/>", headers={"content-type": "application/xml"})
        assert xml.status_code == 415
        plain = client.post("/predict/fraud", content=b"x", headers={"content-type": "text/plain"})
        assert plain.status_code == 415


def test_bodies_over_the_limit_get_413_without_being_read_whole(serve: Any) -> None:
    live: LiveServer = serve(max_body_bytes=1000)
    with live.client() as client:
        declared = client.post("/predict/fraud", content=b"[" + b" " * 5000 + b"]")
        assert declared.status_code == 413
        assert "over the limit of 1,000 bytes" in declared.json()["error"]

        def chunks() -> Any:  # no Content-Length: the limit is enforced while the body streams in
            yield b"["
            for _ in range(100):
                yield b" " * 100
            yield b"]"

        streamed = client.post(
            "/predict/fraud", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413


def test_client_prediction_ids_are_kept_and_malformed_ones_refused(serve: Any) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        mine = client.post("/predict/fraud", json=[ROW], headers={"X-Prediction-Id": "order-42"})
        assert mine.headers["x-request-id"] == "order-42"
        assert mine.json()["predictions"][0]["prediction_id"] == "order-42"
        listed = client.post("/predict/fraud", json={"records": [ROW, ROW], "prediction_ids": ["a", "b"]})
        assert [p["prediction_id"] for p in listed.json()["predictions"]] == ["a", "b"]
        bad = client.post("/predict/fraud", json=[ROW], headers={"X-Prediction-Id": "a b/../c"})
        assert bad.status_code == 400
        oip = client.post("/v2/models/fraud/infer", json={"id": "req-7", **oip_columns([ROW])})
        assert oip.json()["id"] == "req-7"


def test_api_keys_guard_every_route_but_health(serve: Any) -> None:
    key = "k" * 32
    live: LiveServer = serve(api_keys=(key,))
    with live.client() as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/ping").status_code == 200
        for path in ("/metrics", "/v2/models/fraud"):
            refused = client.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            client.post("/predict/fraud", json=[ROW], headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert (
            client.post("/predict/fraud", json=[ROW], headers={"Authorization": f"Bearer {key}"}).status_code
            == 200
        )
        assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200


def test_overload_is_shed_with_503_and_retry_after(serve: Any) -> None:
    live: LiveServer = serve(max_concurrency=1, max_queue=0)
    app = live.app
    release = threading.Event()
    entered = threading.Event()
    server = _server_of(app)
    predictor = server.pool.get("fraud").predictor
    original = predictor.predict

    def slow(frame: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(frame, **kwargs)

    predictor.predict = slow  # type: ignore[method-assign]
    results: list[int] = []
    with live.client() as first_client:
        worker = threading.Thread(
            target=lambda: results.append(first_client.post("/predict/fraud", json=[ROW]).status_code)
        )
        worker.start()
        assert entered.wait(10)
        with live.client() as client:
            shed = client.post("/predict/fraud", json=[ROW])
        release.set()
        worker.join(10)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert results == [200]


def test_a_prediction_over_the_timeout_answers_504(serve: Any) -> None:
    live: LiveServer = serve(timeout_s=0.2)
    predictor = _server_of(live.app).pool.get("fraud").predictor
    release = threading.Event()
    original = predictor.predict

    def stuck(frame: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return original(frame, **kwargs)

    predictor.predict = stuck  # type: ignore[method-assign]
    try:
        with live.client() as client:
            answer = client.post("/predict/fraud", json=[ROW])
    finally:
        release.set()
    assert answer.status_code == 504
    assert "longer than 0.2 s" in answer.json()["error"]


def test_metrics_count_requests_by_model_version_endpoint_and_status(serve: Any) -> None:
    live: LiveServer = serve()
    with live.client() as client:
        client.post("/predict/fraud", json=[ROW, ROW, ROW])
        client.post("/predict/fraud", json=[{"amount": "x"}])
        text = client.get("/metrics").text
    assert 'loopml_requests_total{endpoint="/predict/{m}",model="fraud",status="200",version="1"} 1.0' in text
    assert 'loopml_requests_total{endpoint="/predict/{m}",model="fraud",status="400",version=""} 1.0' in text
    assert 'loopml_batch_rows_bucket{le="4.0",model="fraud",version="1"} 1.0' in text
    assert 'loopml_served_version{model="fraud",runtime="onnxruntime",version="1"} 1.0' in text
    assert "loopml_queue_depth 0.0" in text


def test_an_alias_move_swaps_versions_and_in_flight_requests_finish_on_the_old_one(
    serve: Any, project: Tracker
) -> None:
    live: LiveServer = serve()
    server = _server_of(live.app)
    old = server.pool.get("fraud")
    release = threading.Event()
    entered = threading.Event()
    original = old.predictor.predict

    def held(frame: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(frame, **kwargs)

    old.predictor.predict = held  # type: ignore[method-assign]
    answers: list[httpx.Response] = []
    with live.client() as client:
        worker = threading.Thread(target=lambda: answers.append(client.post("/predict/fraud", json=[ROW])))
        worker.start()
        assert entered.wait(10)
        loopml.models.set_alias("fraud", "champion", 2, tracker=project)
        assert server.pool.refresh() == [("fraud", 1, 2)]
        with live.client() as other:
            assert other.post("/predict/fraud", json=[ROW]).headers["x-model-version"] == "2"
        release.set()
        worker.join(10)
    assert answers[0].headers["x-model-version"] == "1"
    assert answers[0].status_code == 200
    # The old version is forgotten once nothing routes to it: a server's memory does not grow per retrain.
    from loopml.registry import loading

    assert [s.number for s in server.pool._loaded.values()] == [2]
    assert not [key for key in loading._loaded if key[1] == old.version.package_digest]


def test_a_broken_new_version_leaves_the_old_one_serving(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    server = _server_of(live.app)
    frame, label = training_frame(seed=1)
    broken = loopml.models.register("fraud", classifier(0.5).fit(frame, label), sample=frame, tracker=project)
    loopml.models.set_alias("fraud", "champion", broken.version.version, tracker=project)
    # Its package is lost from the blob store (and from the restored cache): it cannot load.
    for folder in ("blobs", "cache"):
        shutil.rmtree(project.settings.home_dir / folder)
    assert server.pool.refresh() == []
    assert "cannot load fraud@v3" in server.pool.last_error["fraud"]
    with live.client() as client:
        answer = client.post("/predict/fraud", json=[ROW])
    assert answer.status_code == 200
    assert answer.headers["x-model-version"] == "1"


def _server_of(app: Any) -> Any:
    return app.state.server


def test_numeric_rows_take_the_fast_path_and_still_refuse_what_validation_refuses() -> None:
    from loopml.registry.signature import ColumnSpec, Signature
    from loopml.serving.codecs import mlflow_frame

    signature = Signature((ColumnSpec("x", "float", False), ColumnSpec("n", "integer", False)))
    frame = mlflow_frame(
        b'{"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, 2], [3, 4]]}}', None, signature
    )
    assert frame.to_numpy().tolist() == [[1.5, 2.0], [3.0, 4.0]]
    for body in (
        b'{"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, true]]}}',  # a bool is not a number
        b'{"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, null]]}}',
        b'{"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, 9007199254740993]]}}',  # 2**53 + 1
        b'{"dataframe_records": [{"x": 1.5, "n": "2"}]}',
    ):
        general = mlflow_frame(body, None, signature)
        assert general.dtypes.tolist() != ["float64", "float64"] or general.isna().any().any(), body


def test_the_null_policy_lets_nulls_through_only_when_asked(serve: Any) -> None:
    row = {"amount": None, "age": 30, "channel": "web"}
    strict: LiveServer = serve()
    with strict.client() as client:
        refused = client.post("/predict/fraud", json=[row])
    assert refused.status_code == 400
    assert refused.json()["problems"][0]["problem"] == "null"
    lenient: LiveServer = serve(policy=ValidationPolicy(nulls="pass"))
    with lenient.client() as client:
        answered = client.post("/predict/fraud", json=[row])
    # The model itself decides what a null means: the ONNX copy of this pipeline carries NaN through to
    # the probabilities, which JSON answers as null.
    assert answered.status_code == 200, answered.text
    assert answered.json()["predictions"][0]["probabilities"]["1"] is None
