"""Checking and normalising what users log: param values, metric points, tag values."""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.names import check_key, safe_relative_path
from loopml.tracking.records import RunInput

MAX_PARAM_VALUE = 6_000  # characters, as MLflow
MAX_TAG_VALUE = 8_000
MAX_NOTE = 65_536
MAX_NAME = 250
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys: {"model": {"depth": 3}} -> {"model.depth": 3}."""
    if not isinstance(params, Mapping):
        raise InvalidInput(f"params must be a mapping of names to values, got {type(params).__name__}")
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidInput(f"param name must be a string, got {type(key).__name__}: {key!r}")
        name = f"{prefix}{key}"
        nested = flatten_params(value, f"{name}.") if isinstance(value, Mapping) and value else {name: value}
        for flat_key, flat_value in nested.items():
            if flat_key in flat:
                raise InvalidInput(f"param {flat_key!r} is given twice (once as a dotted key, once nested)")
            flat[flat_key] = flat_value
    return flat


def param_forms(key: str, value: Any) -> tuple[str, str]:
    """(string form used by filters, JSON of the value) for one param; rejects values JSON cannot hold."""
    check_key("param", key)
    plain = _plain(value)
    try:
        as_json = json.dumps(plain, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"param {key!r} has a value of type {type(value).__name__} that is not JSON-able; "
            "log a string, number, bool, None, list or dict"
        ) from None
    # Strings as they are; bool and None as Python writes them (as MLflow stores them); the rest as JSON.
    text = (
        plain
        if isinstance(plain, str)
        else str(plain)
        if plain is None or isinstance(plain, bool)
        else as_json
    )
    _check_text(f"param {key!r}", text)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidInput(f"param {key!r} value has {len(text)} characters; the limit is {MAX_PARAM_VALUE}")
    return text, as_json


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays become Python values; tuples become lists."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def metric_value(key: str, value: Any) -> float:
    """A metric value as float; NaN and ±inf are kept (as MLflow does), non-numbers are refused."""
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise InvalidInput(f"metric {key!r} value is too large for a float: {value!r:.80}") from None
    raise InvalidInput(f"metric {key!r} must be a number, got {type(value).__name__}: {value!r:.80}")


def metric_step(key: str, step: Any, what: str = "step") -> int:
    """A metric step (or timestamp) as a 64-bit int; refuses anything else before it reaches the buffer."""
    if (
        isinstance(step, numbers.Integral)
        and not isinstance(step, bool)
        and INT64_MIN <= int(step) <= INT64_MAX
    ):
        return int(step)
    raise InvalidInput(
        f"metric {key!r} {what} must be a 64-bit integer, got {type(step).__name__}: {step!r:.80}"
    )


def tag_value(key: str, value: Any) -> str:
    """A tag value as string, within the size limit."""
    check_key("tag", key)
    text = value if isinstance(value, str) else json.dumps(_plain(value), default=str)
    _check_text(f"tag {key!r}", text)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidInput(f"tag {key!r} value has {len(text)} characters; the limit is {MAX_TAG_VALUE}")
    return text


def check_name(kind: str, name: Any) -> str:
    """An experiment or run name: a non-empty string of at most 250 characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{kind} name must be a non-empty string, got {name!r:.80}")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{kind} name has {len(name)} characters; the limit is {MAX_NAME}")
    _check_text(f"{kind} name", name)
    return name


MAX_ARTIFACT_PATH = 1024
MAX_LABEL = 64


def check_artifact_path(path: Any) -> str:
    """A relative artifact path inside the run, normalised, within the length limit."""
    normal = safe_relative_path(path)
    if len(normal) > MAX_ARTIFACT_PATH:
        raise InvalidInput(f"artifact path has {len(normal)} characters; the limit is {MAX_ARTIFACT_PATH}")
    _check_text("artifact path", normal)
    return normal


def check_input(item: RunInput) -> RunInput:
    """A dataset reference with a valid name and short version/context labels."""
    if not isinstance(item, RunInput):
        raise InvalidInput(f"inputs must be loopml.RunInput records, got {type(item).__name__}")
    check_key("dataset", item.dataset)
    check_text("dataset version", item.version, MAX_LABEL)
    for kind, label in (("input context", item.context), ("input digest", item.digest)):
        if label is not None:
            check_text(kind, label, MAX_LABEL)
    return item


def check_text(kind: str, text: Any, limit: int) -> str:
    """Free text (a note, a version label): a string within `limit` characters, without NUL."""
    if not isinstance(text, str):
        raise InvalidInput(f"{kind} must be a string, got {type(text).__name__}")
    if len(text) > limit:
        raise InvalidInput(f"{kind} has {len(text)} characters; the limit is {limit}")
    _check_text(kind, text)
    return text


def _check_text(kind: str, text: str) -> None:
    # PostgreSQL cannot store NUL in text; refusing it everywhere keeps both databases alike.
    if "\x00" in text:
        raise InvalidInput(f"{kind} contains a NUL character")
