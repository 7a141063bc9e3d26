"""The three wire formats as `Codec`s: how each endpoint decodes a body and encodes the outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput
from loopml.serving import codecs
from loopml.serving.pool import ServedModel
from loopml.serving.predictor import PREDICTION, column_list
from loopml.serving.server import Codec, Decoded, row_ids

# --- Open Inference Protocol V2 ---------------------------------------------------------------------------


def _oip_decode(body: bytes, served: ServedModel) -> Decoded:
    document = codecs.parse_json(body)
    frame = codecs.oip_frame(document, served.predictor.signature)
    outputs = codecs.requested_outputs(document, served.predictor.output_names(True))
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    return Decoded(frame, probabilities=outputs != [PREDICTION], context=(outputs, request_id))


def _oip_encode(
    outputs: dict[str, np.ndarray], served: ServedModel, decoded: Decoded, request_id: str
) -> Any:
    names, given_id = decoded.context
    return {
        "model_name": served.name,
        "model_version": str(served.number),
        "id": given_id or request_id,
        "outputs": [
            {
                "name": name,
                "shape": [len(outputs[name])],
                "datatype": codecs.oip_datatype(np.asarray(outputs[name])),
                "data": column_list(outputs[name]),
            }
            for name in names
        ],
    }


OIP = Codec(_oip_decode, _oip_encode)


def oip_tensor_type(column_type: str) -> str:
    """The OIP datatype of a signature column type."""
    return {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}.get(column_type, "BYTES")


def oip_metadata(served: ServedModel, versions: list[int]) -> dict[str, Any]:
    """`GET /v2/models/{m}`: name, versions, platform and the input/output tensors of the signature."""
    signature = served.predictor.signature
    inputs = [] if signature is None else signature.inputs
    outputs = served.predictor.output_names(True)
    return {
        "name": served.name,
        "versions": [str(v) for v in versions],
        "platform": served.predictor.runtime,
        "inputs": [{"name": c.name, "datatype": oip_tensor_type(c.type), "shape": [-1]} for c in inputs],
        "outputs": [
            {
                "name": name,
                "datatype": "FP64" if name != PREDICTION else _prediction_type(served),
                "shape": [-1],
            }
            for name in outputs
        ],
    }


def _prediction_type(served: ServedModel) -> str:
    signature = served.predictor.signature
    if signature is not None:
        for column in signature.outputs:
            if column.name == PREDICTION:
                return oip_tensor_type(column.type)
    return "BYTES" if served.predictor.classes else "FP64"


# --- MLflow scoring server ---------------------------------------------------------------------------------


def mlflow_codec(content_type: str | None) -> Codec:
    """`/invocations`: rows as MLflow reads them; `{"predictions": [...]}` as MLflow answers."""

    def decode(body: bytes, served: ServedModel) -> Decoded:
        frame = codecs.mlflow_frame(body, content_type, served.predictor.signature)
        return Decoded(frame, probabilities=False)

    def encode(outputs: dict[str, np.ndarray], served: ServedModel, decoded: Decoded, request_id: str) -> Any:
        return {"predictions": column_list(outputs[PREDICTION])}

    return Codec(decode, encode)


# --- plain records -----------------------------------------------------------------------------------------


def _records_decode(body: bytes, served: ServedModel) -> Decoded:
    frame, ids = codecs.records_frame(codecs.parse_json(body), served.predictor.signature)
    return Decoded(frame, prediction_ids=ids)


def _records_encode(
    outputs: dict[str, np.ndarray], served: ServedModel, decoded: Decoded, request_id: str
) -> Any:
    rows = len(outputs[PREDICTION])
    ids = row_ids(request_id, rows, decoded.prediction_ids)
    labels = column_list(outputs[PREDICTION])
    classes = [name for name in outputs if name != PREDICTION]
    probabilities = {name: column_list(outputs[name]) for name in classes}
    predictions = []
    for i in range(rows):
        row: dict[str, Any] = {"prediction_id": ids[i], "prediction": labels[i]}
        if classes:
            row["probabilities"] = {name.removeprefix("proba_"): probabilities[name][i] for name in classes}
        predictions.append(row)
    return {
        "model": served.name,
        "model_version": served.number,
        "request_id": request_id,
        "predictions": predictions,
    }


RECORDS = Codec(_records_decode, _records_encode)


# --- feedback ----------------------------------------------------------------------------------------------

MAX_FEEDBACK_ITEMS = 10_000


def feedback_items(document: Any, served: list[str]) -> tuple[str | None, list[tuple[str, Any]]]:
    """`{"model"?, "labels": [{"prediction_id", "label"}, ...]}` as (model, pairs); the model, when given,
    must be one this server serves (labels of other models go to their own server or the team server)."""
    if not isinstance(document, dict) or not isinstance(document.get("labels"), list):
        raise InvalidInput(
            'feedback is {"labels": [{"prediction_id": "...", "label": ...}, ...], "model"?: NAME}'
        )
    unknown = sorted(set(document) - {"model", "labels"})
    if unknown:
        raise InvalidInput(f"unknown keys {unknown}; feedback holds 'labels' and optionally 'model'")
    model = document.get("model")
    if model is not None and model not in served:
        raise InvalidInput(f"model {model!r} is not served here (served: {', '.join(served)})")
    labels = document["labels"]
    if len(labels) > MAX_FEEDBACK_ITEMS:
        raise InvalidInput(
            f"at most {MAX_FEEDBACK_ITEMS:,} labels per request; send {len(labels):,} in batches"
        )
    bad = [
        i
        for i, item in enumerate(labels)
        if not isinstance(item, dict) or set(item) != {"prediction_id", "label"}
    ]
    if bad:
        raise InvalidInput(f"labels {bad[:10]} are not objects with exactly prediction_id and label")
    return model, [(item["prediction_id"], item["label"]) for item in labels]
