"""`drift_report`: raw frames or a stored profile as reference, findings for bad columns, dict/repr/HTML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml.monitoring
from loopml.core.errors import InvalidInput
from loopml.monitoring import ColumnDriftConfig, DriftConfig, drift_report
from loopml.stats import profile_columns


def frames(rows: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    levels = np.array(["a", "b", "c", "d"], dtype=object)
    p = [0.55, 0.25, 0.1, 0.1] if shift else [0.25] * 4
    return pd.DataFrame(
        {
            "amount": rng.normal(100 + (10 if shift else 0), 20, rows),
            "year": rng.integers(2015, 2025, rows).astype(float),
            "flag": rng.random(rows) < 0.3,
            "city": levels[rng.choice(4, size=rows, p=p)],
            "steady": rng.normal(0, 1, rows),
        }
    )


def test_public_names_are_pinned() -> None:
    assert sorted(loopml.monitoring.__all__) == [
        "ColumnDrift", "ColumnDriftConfig", "DriftConfig", "DriftReport", "check", "drift_report", "run",
    ]  # fmt: skip
    assert callable(loopml.monitoring.run)
    assert callable(loopml.monitoring.check)


@pytest.mark.parametrize("as_profile", [False, True])
def test_known_shift_is_flagged_and_nothing_else(as_profile: bool) -> None:
    reference = frames(20_000, 0, shift=False)
    ref = profile_columns({c: reference[c].to_numpy() for c in reference}) if as_profile else reference
    report = drift_report(reference=ref, current=frames(20_000, 1, shift=True))
    assert set(report.drifted_columns) == {"amount", "city"}
    assert report.reference_source == ("profile" if as_profile else "rows")
    assert report.share == pytest.approx(2 / 5)
    assert not report.drifted
    same = drift_report(reference=ref, current=frames(20_000, 2, shift=False))
    assert same.drifted_columns == []
    assert same.columns["amount"].method == "wasserstein"
    assert same.columns["city"].method == "jensen_shannon"


def test_profile_and_raw_reference_agree() -> None:
    reference, current = frames(30_000, 3, shift=False), frames(30_000, 4, shift=True)
    profile = profile_columns({c: reference[c].to_numpy() for c in reference})
    raw = drift_report(reference, current)
    stored = drift_report(json.loads(json.dumps(profile.to_dict())), current)  # the dict form works too
    for name in ("amount", "steady", "year"):
        a, b = raw.columns[name], stored.columns[name]
        assert a.score is not None
        assert b.score is not None
        assert b.error is not None
        assert abs(a.score - b.score) <= b.error + 1e-9
    assert stored.columns["city"].score == pytest.approx(raw.columns["city"].score)


def test_small_current_window_uses_tests_with_fdr() -> None:
    report = drift_report(frames(5000, 5, shift=False), frames(300, 6, shift=True))
    assert report.columns["amount"].method == "ks"
    assert report.columns["city"].method == "chi2"
    assert {"amount", "city"} <= set(report.drifted_columns)
    assert "steady" not in report.drifted_columns


def test_bad_columns_are_findings_not_errors() -> None:
    reference = frames(3000, 7, shift=False)
    current = frames(3000, 8, shift=False).drop(columns=["steady"])
    current["amount"] = "oops"
    current["year"] = np.nan
    report = drift_report(reference, current)
    assert report.columns["steady"].status == "missing"
    assert report.columns["amount"].status == "skipped"
    assert "cannot be compared" in report.columns["amount"].note
    assert report.columns["year"].status == "all_null"
    assert report.compared == 2
    assert report.drifted_columns == []
    empty = drift_report(reference, reference.iloc[:0])
    assert {c.status for c in empty.columns.values()} == {"empty"}
    assert not empty.drifted


def test_config_feature_importance_and_columns() -> None:
    reference, current = frames(5000, 9, shift=False), frames(5000, 10, shift=True)
    config = DriftConfig(columns={"amount": ColumnDriftConfig(threshold=5.0)}, drift_share=0.3)
    report = drift_report(reference, current, columns=["amount", "city"], config=config)
    assert list(report.columns) == ["amount", "city"]
    assert report.drifted_columns == ["city"]
    weighted = drift_report(reference, current, feature_importance={"amount": 0.9, "city": 0.1, "steady": 0})
    assert weighted.weighted_share == pytest.approx(1.0)
    assert weighted.drifted
    with pytest.raises(InvalidInput):
        drift_report(reference, current, columns=["nope"])
    with pytest.raises(InvalidInput):
        drift_report([1, 2, 3], current)


def test_dict_repr_and_html(tmp_path: Path) -> None:
    report = drift_report(frames(5000, 11, shift=False), frames(5000, 12, shift=True))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["columns"]["amount"]["drifted"] is True
    assert data["config"]["drift_share"] == 0.5
    text = repr(report)
    assert "amount" in text
    assert "DRIFT" in text
    assert "2/5 columns drifted" in text
    page = report.to_html(tmp_path / "drift.html").read_text()
    assert page.count("<svg") == 5
    assert "http://www.w3.org/2000/svg" in page
    assert "<script" not in page
    assert "https://" not in page
    assert "<link" not in page
