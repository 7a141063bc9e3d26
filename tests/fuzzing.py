"""Bounded Schemathesis fuzzing of a live server's routes, shared by the serving and team server tests."""

from __future__ import annotations

import collections
from typing import Any

from hypothesis import HealthCheck, given, settings


def fuzz(
    strategy: Any,
    url: str,
    seen: collections.Counter[tuple[str, int]],
    *,
    examples: int,
    headers: dict[str, str] | None = None,
) -> None:
    """Send `examples` derandomized cases of `strategy` to `url`: never a 5xx, every error a JSON object
    with a message; counts (operation, status) in `seen`."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        seen[(case.operation.label, response.status_code)] += 1
        assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text)
        if response.status_code >= 400:
            assert isinstance(response.json().get("error"), str), response.text

    check()
