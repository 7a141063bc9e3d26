"""Names and relative paths given by users never escape where they belong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopml.core.errors import InvalidInput, PathEscapes
from loopml.core.names import check_key, safe_relative_path


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "a/../../b", "..", ".", "", "C:/x", "a\x00b", "\\\\server\\x"]
)
def test_escaping_paths_are_refused(path: str) -> None:
    with pytest.raises(PathEscapes):
        safe_relative_path(path)


@pytest.mark.parametrize(
    ("path", "normal"), [("a/b", "a/b"), ("a/./b", "a/b"), ("a/x/../b", "a/b"), ("a\\b", "a/b")]
)
def test_inner_paths_are_normalised(path: str, normal: str) -> None:
    assert safe_relative_path(path) == normal


@given(st.text(max_size=40))
def test_any_accepted_path_stays_inside(path: str) -> None:
    try:
        normal = safe_relative_path(path)
    except PathEscapes:
        return
    assert not normal.startswith(("/", "../"))
    assert normal not in {"", ".", ".."}


@pytest.mark.parametrize("key", ["", "a" * 251, "x;y", "../k", "/k", " k", 3])
def test_bad_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidInput):
        check_key("metric", key)


def test_good_keys_pass() -> None:
    assert check_key("metric", "val/auc-1.0:x y") == "val/auc-1.0:x y"
