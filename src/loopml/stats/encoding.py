"""How profiles spell numbers in JSON: count arrays as zlib+base64 text, non-finite floats as strings.

A profile must stay a few KB per column, so the arrays that make up most of it (quantile-sketch buckets, HLL
registers) are packed: little-endian unsigned integers, zlib-compressed, base64-encoded. Sketch buckets pack
about 2.5 times smaller this way than as a JSON list of numbers. Floats stay plain JSON numbers (`repr` round
trips exactly); the rare non-finite ones (an overflowed sum of squares) become "inf", "-inf" or "nan", so the
output is strict JSON.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def pack_uints(values: npt.ArrayLike) -> str:
    """Non-negative integers -> compact text (uint64, little-endian, zlib, base64)."""
    raw = np.asarray(values, dtype="<u8").tobytes()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unpack_uints(text: Any, *, what: str) -> npt.NDArray[np.int64]:
    """Inverse of `pack_uints`, as int64; `what` names the field in the error message."""
    raw = unpack_bytes(text, what=what)
    if len(raw) % 8:
        raise InvalidInput(
            f"profile field {what!r} does not hold whole 64-bit integers; the profile is damaged"
        )
    return np.frombuffer(raw, dtype="<u8").astype(np.int64)


def pack_bytes(raw: bytes) -> str:
    """Bytes -> compact text (zlib, base64)."""
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def unpack_bytes(text: Any, *, what: str) -> bytes:
    """Inverse of `pack_bytes`; `what` names the field in the error message."""
    if not isinstance(text, str):
        raise InvalidInput(f"profile field {what!r} must be a packed string, got {type(text).__name__}")
    try:
        return zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, zlib.error):
        raise InvalidInput(
            f"profile field {what!r} is not valid packed data; the profile is damaged"
        ) from None


def float_out(value: float) -> float | str:
    """A float as strict JSON allows: itself when finite, else "inf", "-inf" or "nan"."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def float_in(value: Any, *, what: str) -> float:
    """Inverse of `float_out`; ints are accepted, bools and other types are refused."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"profile field {what!r} must be a number, got {value!r}")
    return float(value)


def optional_float_in(value: Any, *, what: str) -> float | None:
    """`float_in`, with None passed through (min and max of an empty column)."""
    return None if value is None else float_in(value, what=what)


def int_in(value: Any, *, what: str) -> int:
    """A non-negative JSON integer; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"profile field {what!r} must be a non-negative integer, got {value!r}")
    return value
