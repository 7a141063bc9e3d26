"""The `onnx` flavor: an ONNX model, saved as its own protobuf file and run by ONNX Runtime.

A package holds one file, `model.onnx`: the model serialized deterministically, so its bytes, and the content
hash taken of them, are the same for the same model in any process. Loading builds an `OnnxModel` (an
`OnnxClassifier` when the model outputs labels and probabilities) around an `onnxruntime.InferenceSession`,
with the `predict` / `predict_proba` of a scikit-learn model: it feeds either the model's one 2-D input or, as
skl2onnx makes for DataFrames, one input per column, named after it.

Running an ONNX model runs only the operators ONNX Runtime ships, so loading needs no trust. A model whose
tensors live in external files is refused: the package would not hold all of it, and the file names in the
model could point anywhere on the machine that loads it.

skl2onnx converters record nothing of the scikit-learn model beyond the graph; `onnx_copy` adds what serving
needs as one metadata entry, `loopml` (JSON: the DataFrame columns in training order, the classes, whether the
second output holds probabilities), which `OnnxModel` reads when present.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import hash_bytes
from loopml.registry.flavor import Flavor, installed_version

__all__ = ["METADATA_KEY", "MODEL_FILE", "OnnxClassifier", "OnnxFlavor", "OnnxModel", "serialize"]

MODEL_FILE = "model.onnx"
METADATA_KEY = "loopml"
_INSTALL_HINT = "pip install 'loopml[onnx]'"
# ONNX Runtime's names of tensor element types -> the numpy type it accepts for them.
_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}
# Attributes in which ONNX-ML classifier operators (ZipMap, LinearClassifier, TreeEnsembleClassifier, ...)
# list the class labels.
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


class OnnxModel:
    """An ONNX model run by ONNX Runtime, with `predict(frame_or_array)` like a scikit-learn model.

    `predict` returns the model's first output (a single-column output flattened, as scikit-learn does);
    `classes_` is there when the model names its classes. Build one with `OnnxModel.of(model_bytes)`, which
    returns an `OnnxClassifier` for a model that outputs probabilities.
    """

    def __init__(
        self, model_bytes: bytes, session: Any, metadata: dict[str, Any], *, classes: np.ndarray | None = None
    ) -> None:
        self.model_bytes = model_bytes
        self.session = session
        self.metadata = metadata
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._inputs = [(i.name, i.type, len(i.shape)) for i in session.get_inputs()]
        columns = metadata.get("columns")
        self._columns = [str(c) for c in columns] if isinstance(columns, list) else None
        if classes is not None:
            self.classes_ = classes

    @staticmethod
    def of(model_bytes: bytes) -> OnnxModel:
        """The model in `model_bytes` (an ONNX protobuf), ready to predict; `InvalidInput` if it cannot run."""
        onnx, ort = _onnx(), _onnxruntime()
        try:
            proto = onnx.load_from_string(model_bytes)
        except Exception as error:  # protobuf's DecodeError, or anything its parser raises on garbage
            raise InvalidInput(f"these bytes are not an ONNX model: {error}") from None
        _refuse_external_data(proto)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ONNX Runtime's warnings go to stderr, not to logging
        # One thread per call, no spinning: a server runs several calls at once, and tabular models are too
        # small to gain from splitting one call (measured: a 100-tree forest on 1,000 rows used twice the
        # CPU of its wall time with ONNX Runtime's default pool spinning between calls).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime raises its own exception types for invalid graphs
            raise InvalidInput(
                f"ONNX Runtime {installed_version('onnxruntime')} cannot run this model: {error}"
            ) from None
        metadata = _metadata(proto)
        kind = OnnxClassifier if _has_probabilities(session, metadata) else OnnxModel
        return kind(model_bytes, session, metadata, classes=_classes(proto, metadata))

    def predict(self, data: Any) -> Any:
        """The first output of the model on `data` (a DataFrame or a 2-D array)."""
        first = self.run(data)[0]
        if isinstance(first, np.ndarray) and first.ndim == 2 and first.shape[1] == 1:
            return first.ravel()
        return first

    def run(self, data: Any) -> list[Any]:
        """Every output of the model on `data`, as ONNX Runtime returns them."""
        return list(self.session.run(None, self.feeds(data)))

    def feeds(self, data: Any) -> dict[str, Any]:
        """The model's inputs made from `data`: one 2-D tensor, or one column each for one input per column."""
        if len(self._inputs) == 1:
            name, onnx_type, rank = self._inputs[0]
            if hasattr(data, "iloc") and self._columns is not None:
                data = _select(data, self._columns)
            values = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
            if values.ndim == 1 and rank == 2:
                raise InvalidInput(
                    f"the ONNX model takes a 2-D input {name!r}, got a 1-D array: pass rows of columns "
                    "(x.reshape(1, -1) for one row)"
                )
            return {name: _cast(values, onnx_type, name)}
        if hasattr(data, "iloc"):
            frame = _select(data, [name for name, _, _ in self._inputs])
            columns = [frame[name].to_numpy() for name, _, _ in self._inputs]
        else:
            values = np.asarray(data)
            if values.ndim != 2 or values.shape[1] != len(self._inputs):
                raise InvalidInput(
                    f"the ONNX model takes {len(self._inputs)} inputs, one per column "
                    f"({', '.join(self.input_names)}): pass a DataFrame with those columns, or a 2-D array "
                    f"of {len(self._inputs)} columns in that order, got shape {values.shape}"
                )
            columns = [values[:, i] for i in range(values.shape[1])]
        return {
            name: _cast(column.reshape(-1, 1) if rank == 2 else column, onnx_type, name)
            for (name, onnx_type, rank), column in zip(self._inputs, columns, strict=True)
        }

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} inputs={self.input_names} outputs={self.output_names} "
            f"{len(self.model_bytes)} bytes>"
        )


class OnnxClassifier(OnnxModel):
    """An ONNX classifier with probabilities: its first output is the label, its second one per class."""

    def predict_proba(self, data: Any) -> np.ndarray:
        """One row of class probabilities per row of `data`, columns in the order of `classes_`."""
        probabilities = self.run(data)[1]
        # skl2onnx's default ZipMap output is a list of {class: probability}, one a row.
        if isinstance(probabilities, list):
            if not probabilities:
                return np.empty((0, len(getattr(self, "classes_", ()))))
            keys = list(getattr(self, "classes_", probabilities[0].keys()))
            return np.array([[row[key] for key in keys] for row in probabilities])
        return np.asarray(probabilities)


class OnnxFlavor(Flavor):
    """`onnx.ModelProto` models (and loaded `OnnxModel`s) as `model.onnx`, run by ONNX Runtime."""

    name = "onnx"
    # The graph's meaning is fixed by its opsets; the runtime's kernels are what may compute other numbers.
    checked_libraries = frozenset({"onnxruntime"})

    def accepts(self, model: Any) -> bool:
        """True for an `onnx.ModelProto` (only possible once onnx is imported) or an `OnnxModel`."""
        if isinstance(model, OnnxModel):
            return True
        onnx = _loaded("onnx")
        return onnx is not None and isinstance(model, onnx.ModelProto)

    def save(self, model: Any, folder: Path) -> list[str]:
        """Write `model.onnx`; `InvalidInput` for a model whose tensors are in external files."""
        data = serialize(model)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_bytes(data)
        return [MODEL_FILE]

    def load(self, folder: Path, *, trusted: bool = False) -> OnnxModel:
        """The model as an `OnnxModel` (or `OnnxClassifier`) on the CPU (`trusted` is ignored)."""
        path = folder / MODEL_FILE
        if not path.is_file():
            raise NotFound(f"the model package at {folder} has no {MODEL_FILE}: it is incomplete or not onnx")
        return OnnxModel.of(path.read_bytes())

    def content_hash(self, model: Any) -> str:
        """Digest of the model's deterministic protobuf serialization."""
        return hash_bytes(serialize(model))

    def libraries(self, model: Any = None) -> dict[str, str]:
        """Installed versions of onnx and onnxruntime (`model` adds nothing)."""
        found = {name: installed_version(name) for name in ("onnx", "onnxruntime")}
        return {name: version for name, version in found.items() if version is not None}


def serialize(model: Any) -> bytes:
    """The deterministic protobuf bytes of an `onnx.ModelProto`, an `OnnxModel`, or ONNX model bytes."""
    onnx = _onnx()
    if isinstance(model, OnnxModel):
        model = model.model_bytes
    if isinstance(model, bytes | bytearray):
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as error:  # protobuf's DecodeError, or anything its parser raises on garbage
            raise InvalidInput(f"these bytes are not an ONNX model: {error}") from None
    if not isinstance(model, onnx.ModelProto):
        raise InvalidInput(
            f"expected an onnx.ModelProto, got a {type(model).__module__}.{type(model).__name__}"
        )
    _refuse_external_data(model)
    data: bytes = model.SerializeToString(deterministic=True)
    return data


def _refuse_external_data(proto: Any) -> None:
    from onnx.external_data_helper import uses_external_data

    external = [tensor.name for tensor in _tensors(proto.graph) if uses_external_data(tensor)]
    if external:
        raise InvalidInput(
            f"the ONNX model keeps {len(external)} tensors ({', '.join(external[:3])}) in external files; "
            "load it with onnx.load(path), which reads them in, and pass that model"
        )


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds: initializers, and those in node attributes and subgraphs (If, Loop)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _metadata(proto: Any) -> dict[str, Any]:
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                found = json.loads(entry.value)
            except json.JSONDecodeError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def _has_probabilities(session: Any, metadata: dict[str, Any]) -> bool:
    if "probabilities" in metadata:
        return bool(metadata["probabilities"])
    outputs = session.get_outputs()
    # skl2onnx's classifiers: a label, then probabilities as a 2-D tensor or a ZipMap (a sequence of maps).
    return len(outputs) == 2 and (outputs[1].type.startswith("seq(map(") or len(outputs[1].shape) == 2)


def _classes(proto: Any, metadata: dict[str, Any]) -> np.ndarray | None:
    if isinstance(metadata.get("classes"), list):
        return np.asarray(metadata["classes"])
    onnx = _onnx()
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return np.asarray([v.decode() if isinstance(v, bytes) else v for v in values])
    return None


def _select(frame: Any, names: Sequence[str]) -> Any:
    if len(frame.columns) == len(names) and frame.columns.equals(_index(tuple(names))):
        return frame  # already in model order (a validated frame is): selecting copies, ~50 us a call
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidInput(
            f"the ONNX model needs the columns {', '.join(names)}; the data has no {', '.join(missing)}"
        )
    return frame[list(names)]


@functools.lru_cache(maxsize=64)
def _index(names: tuple[str, ...]) -> Any:
    """Column names as a pandas Index, built once per model: comparing Index objects is vectorised."""
    import pandas as pd

    return pd.Index(names)


def _cast(values: np.ndarray, onnx_type: str, name: str) -> np.ndarray:
    if onnx_type not in _DTYPES:
        raise InvalidInput(f"input {name!r} of the ONNX model has type {onnx_type}, which LoopML cannot feed")
    dtype = _DTYPES[onnx_type]
    if dtype is object:
        return values.astype(object, copy=False)
    try:
        return values.astype(dtype, copy=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"input {name!r} of the ONNX model takes {np.dtype(dtype).name} values: {error}"
        ) from None


def _loaded(module: str) -> Any:
    # A model of a library's type exists only once the library is imported: a check that imports nothing.
    return sys.modules.get(module)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InvalidInput(f"ONNX models need onnx: {_INSTALL_HINT}") from None
    return onnx


def _onnxruntime() -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError:
        raise InvalidInput(f"running ONNX models needs onnxruntime: {_INSTALL_HINT}") from None
    return onnxruntime
