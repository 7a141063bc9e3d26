"""Every route of the real server fuzzed from its own OpenAPI spec (bounded): never a 5xx, every error JSON.

Schemathesis generates requests from `/openapi.json`: bodies that follow the spec (positive) and bodies that
break it (negative), with path parameters as generated and pinned to the served model, so the bodies reach
decoding and validation rather than stopping at "model not served". Each operation gets a fixed number of
derandomized examples, so the run is bounded and repeatable.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from fuzzing import fuzz

if TYPE_CHECKING:
    from conftest import (
        LiveServer,  # tests/serving/conftest.py (a type only: "conftest" is ambiguous at run time)
    )

EXAMPLES = 20  # per operation, mode and path choice


def test_no_route_answers_5xx_or_a_non_json_error(serve: Any) -> None:
    live: LiveServer = serve(max_body_bytes=64 * 1024)
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    for operation in operations:
        names = {parameter.name for parameter in operation.path_parameters}
        served = {k: v for k, v in {"model": "fraud", "version": "1"}.items() if k in names}
        for mode in GenerationMode:
            for pinned in [None, served] if served else [None]:
                strategy = operation.as_strategy(mode, path_parameters=pinned)
                try:
                    fuzz(strategy, live.url, seen, examples=EXAMPLES)
                except (
                    Unsatisfiable
                ):  # a route with nothing to break (no parameters, no body) has no negative cases
                    assert mode is GenerationMode.NEGATIVE
    labels = {label for label, _ in seen}
    assert labels == {operation.label for operation in operations}
    statuses = {status for _, status in seen}
    assert 200 in statuses
    assert {400, 404} <= statuses
    assert seen[("POST /predict/{model}", 400)] > 0  # bodies reached validation
