"""Checking pipeline params and step arguments against the function's annotations (pydantic does the work).

Three sources, three rules: Python callers are checked strictly (only int -> float is converted); CLI text
(`-p lr=1e-3`) is parsed as the annotation asks (JSON for containers, pydantic's string rules otherwise);
params stored with a run (JSON, for resume and rerun) are converted back leniently (a list to a tuple, a
string to a Path or an Enum).
"""

from __future__ import annotations

import json
from typing import Any, Literal

Source = Literal["python", "text", "stored"]


def conformed(annotation: Any, value: Any, *, source: Source = "python") -> tuple[Any, str | None]:  # noqa: PLR0911
    """(`value` as `annotation` asks; why it does not fit, or None when it does or cannot be checked)."""
    from pydantic import TypeAdapter, ValidationError  # pydantic costs ~50 ms to import: only when needed
    from pydantic.errors import PydanticSchemaGenerationError

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError):
        if isinstance(annotation, type) and not isinstance(value, annotation):
            kind = f"{annotation.__module__}.{annotation.__qualname__}"
            return value, f"must be a {kind}, not {type(value).__name__}"
        return value, None
    try:
        if source == "text" and isinstance(value, str):
            if annotation is str:
                return value, None
            text = value.strip()
            converted = adapter.validate_json(text) if text[:1] in "[{" else adapter.validate_strings(value)
            return converted, None
        converted = adapter.validate_python(value, strict=source == "python")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return value, f"{('at ' + where + ' ') if where else ''}{first['msg'].lower()}, got {value!r}"[:500]
    if source == "stored":
        return converted, None
    # From Python only numbers are converted (int -> float): anything else stays the object passed.
    return (converted if isinstance(value, int) and isinstance(converted, float) else value), None


def type_problem(annotation: Any, value: Any) -> str | None:
    """Why `value` does not fit `annotation` (None when it does, or when the annotation cannot be checked)."""
    return conformed(annotation, value)[1]


def untyped_text(text: str) -> Any:
    """A CLI value for a param without annotation: JSON when it parses (3, 0.5, true, [1, 2]), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
