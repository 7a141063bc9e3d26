"""Pipeline params from Python, from CLI text and from a stored run all end up as the signature asks."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import pytest

import loopml
from loopml.core.errors import InvalidInput


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@loopml.step
def nothing() -> None:
    return None


@loopml.pipeline
def configured(
    lr: float = 0.1,
    shape: tuple[int, int] = (2, 3),
    tag: str | None = None,
    switch: Literal["on", "off"] = "on",
    out: Path = Path("out"),
    mode: Mode = Mode.FAST,
    name: str = "x",
    untyped: Any = None,
    plain=None,
) -> Any:
    return nothing()


def test_cli_text_is_parsed_as_the_annotation_asks() -> None:
    params = configured.check_params(
        {
            "lr": "1e-3",
            "shape": "[3, 4]",
            "tag": "123",
            "switch": "off",
            "out": "/tmp/x",
            "mode": "slow",
            "name": "007",
            "plain": "[1, 2]",
        },
        source="text",
    )
    assert params["lr"] == 0.001
    assert params["shape"] == (3, 4)
    assert params["tag"] == "123"
    assert params["switch"] == "off"
    assert params["out"] == Path("/tmp/x")
    assert params["mode"] is Mode.SLOW
    assert params["name"] == "007"
    assert params["plain"] == [1, 2]
    assert configured.check_params({"plain": "hello"}, source="text")["plain"] == "hello"


def test_stored_json_params_come_back_with_their_types() -> None:
    stored = {"lr": 1, "shape": [5, 6], "out": "p", "mode": "slow", "tag": None}
    params = configured.check_params(stored, source="stored")
    assert params["lr"] == 1.0
    assert params["shape"] == (5, 6)
    assert params["out"] == Path("p")
    assert params["mode"] is Mode.SLOW


@pytest.mark.parametrize(
    ("given", "source", "message"),
    [
        ({"lr": "fast"}, "text", "param 'lr'"),
        ({"shape": "[1, 2, 3]"}, "text", "param 'shape'"),
        ({"switch": "maybe"}, "text", "param 'switch'"),
        ({"lr": "0.1"}, "python", "param 'lr'"),  # Python callers pass the type itself
        ({"mode": "slow"}, "python", "param 'mode'"),
    ],
)
def test_values_that_do_not_fit_are_refused(given: dict[str, Any], source: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        configured.check_params(given, source=source)
