"""Expectations from loopml.toml refuse (or, forced, reject) a table that breaks them, naming each rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import loopml
from loopml import datasets
from loopml.tracking.tracker import Tracker

RULES = """
[datasets.tx.expect]
required_columns = ["id", "amount", "country"]
types = { amount = "numeric" }
ranges = { amount = [0, 1000] }
allowed = { country = ["DE", "FR"] }
max_null_share = { amount = 0.2 }
unique = ["id"]
"""


@pytest.fixture
def rules(sqlite_tracker: Tracker, tmp_path: Path) -> Tracker:
    (tmp_path / "loopml.toml").write_text(RULES)
    return sqlite_tracker


def test_good_table_passes(rules: Tracker) -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "amount": [1.0, 500.0, None, 0.0, 1000.0],
            "country": ["DE", "FR", "DE", "DE", "FR"],
        }
    )
    added = datasets.add("tx", frame)
    assert added.version.status == "accepted"
    assert added.version.validation == []


def test_broken_table_is_refused_with_every_rule_and_examples(rules: Tracker) -> None:
    frame = pd.DataFrame(
        {"id": [1, 2, 2, 4], "amount": [5.0, -3.0, 2000.0, None], "country": ["DE", "US", "FR", "XX"]}
    )
    with pytest.raises(loopml.InvalidInput) as error:
        datasets.add("tx", frame)
    text = str(error.value)
    assert "range (amount)" in text
    assert "row 1: -3.0" in text
    assert "row 2: 2000.0" in text
    assert "allowed (country)" in text
    assert "'US'" in text
    assert "unique (id)" in text
    assert "row 2: 2" in text
    assert "nulls (amount)" in text
    assert datasets.datasets() == []  # nothing registered


def test_forced_version_is_stored_rejected_and_never_latest(rules: Tracker) -> None:
    good = pd.DataFrame({"id": [1], "amount": [1.0], "country": ["DE"]})
    bad = pd.DataFrame({"id": [1], "amount": [1.0], "country": ["US"]})
    datasets.add("tx", good)
    forced = datasets.add("tx", bad, force=True).version
    assert forced.status == "rejected"
    assert forced.validation is not None
    assert forced.validation[0]["rule"] == "allowed"
    assert datasets.catalog().get("tx").version == 1
    assert datasets.catalog().get("tx@v2").status == "rejected"


def test_missing_columns_and_bad_rules_config(rules: Tracker, tmp_path: Path) -> None:
    with pytest.raises(loopml.InvalidInput, match="column 'country' is missing"):
        datasets.add("tx", pd.DataFrame({"id": [1], "amount": [1.0]}))
    (tmp_path / "loopml.toml").write_text('[datasets.tx.expect]\nranges = { amount = "high" }\n')
    with pytest.raises(loopml.InvalidInput, match="malformed"):
        datasets.add("tx", pd.DataFrame({"id": [1], "amount": [1.0]}))
    (tmp_path / "loopml.toml").write_text("[datasets.tx.expect]\nmaximum = 3\n")
    with pytest.raises(loopml.InvalidInput, match="unknown rule"):
        datasets.add("tx", pd.DataFrame({"id": [1], "amount": [1.0]}))
