"""Checking and normalising what users log: param values, metric points, tag values."""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

from loopml.core.errors import InvalidInput
from loopml.core.names import check_key

MAX_PARAM_VALUE = 6_000  # characters, as MLflow
MAX_TAG_VALUE = 8_000
MAX_NOTE = 65_536
MAX_NAME = 250


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys: {"model": {"depth": 3}} -> {"model.depth": 3}."""
    if not isinstance(params, Mapping):
        raise InvalidInput(f"params must be a mapping of names to values, got {type(params).__name__}")
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidInput(f"param name must be a string, got {type(key).__name__}: {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
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
    text = plain if isinstance(plain, str) else as_json
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
        return float(value)
    raise InvalidInput(f"metric {key!r} must be a number, got {type(value).__name__}: {value!r:.80}")


def metric_step(key: str, step: Any) -> int:
    """A metric step as int; refuses non-integers."""
    if isinstance(step, numbers.Integral):
        return int(step)
    raise InvalidInput(f"metric {key!r} step must be an integer, got {type(step).__name__}: {step!r:.80}")


def tag_value(key: str, value: Any) -> str:
    """A tag value as string, within the size limit."""
    check_key("tag", key)
    text = value if isinstance(value, str) else json.dumps(_plain(value), default=str)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidInput(f"tag {key!r} value has {len(text)} characters; the limit is {MAX_TAG_VALUE}")
    return text


def check_name(kind: str, name: Any) -> str:
    """An experiment or run name: a non-empty string of at most 250 characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{kind} name must be a non-empty string, got {name!r:.80}")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{kind} name has {len(name)} characters; the limit is {MAX_NAME}")
    return name
