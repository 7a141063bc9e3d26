"""The demo's synthetic transactions: reproducible, validated, and drifting the way the docstring says."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loopml.core.errors import InvalidInput
from loopml.demo.fraud_data import FEATURES, TARGET, TIME, transactions
from loopml.monitoring import drift_report
from loopml.pipelines import tabular

SHIFTED = {"amount", "merchant_category", "country", "distance_km"}
STABLE = {"hour", "card_age_days", "txn_last_hour"}


def test_the_same_arguments_give_the_same_frame_and_another_seed_another() -> None:
    first = transactions(2_000, seed=7, drift=0.3, start_ms=1_000, span_ms=60_000)
    pd.testing.assert_frame_equal(
        first, transactions(2_000, seed=7, drift=0.3, start_ms=1_000, span_ms=60_000)
    )
    assert not first.equals(transactions(2_000, seed=8, drift=0.3, start_ms=1_000, span_ms=60_000))


def test_columns_types_and_ranges() -> None:
    frame = transactions(5_000, seed=1, start_ms=10_000, span_ms=5_000)
    assert list(frame.columns) == [*FEATURES, TARGET, TIME]
    assert TIME not in FEATURES
    assert TARGET not in FEATURES
    assert frame[TIME].is_monotonic_increasing
    assert frame[TIME].between(10_000, 14_999).all()
    assert frame["hour"].between(0, 23).all()
    assert set(frame[TARGET].unique()) == {0, 1}
    assert (frame["amount"] > 0).all()
    assert (frame["distance_km"] >= 0).all()
    assert (frame["card_age_days"] >= 0).all()
    assert (frame["txn_last_hour"] >= 0).all()
    for name in ("hour", "card_age_days", "txn_last_hour", TARGET, TIME):
        assert frame[name].dtype == np.int64, name
    assert frame["country"].value_counts(normalize=True)["US"] > 0.8
    assert frame.notna().all().all()


@pytest.mark.parametrize("drift", [0.0, 0.5, 1.0])
def test_the_base_rate_stays_near_five_percent(drift: float) -> None:
    frame = transactions(20_000, seed=3, drift=drift)
    assert 0.03 <= frame[TARGET].mean() <= 0.08


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows must be an integer >= 1"),
        ({"rows": 2.5}, "rows must be an integer >= 1"),
        ({"rows": True}, "rows must be an integer >= 1"),
        ({"drift": -0.1}, "drift must be a number in [0, 1]"),
        ({"drift": 1.5}, "drift must be a number in [0, 1]"),
        ({"drift": float("nan")}, "drift must be a number in [0, 1]"),
        ({"span_ms": 0}, "span_ms must be an integer >= 1"),
        ({"start_ms": 1.5}, "start_ms must be an integer"),
        ({"seed": "0"}, "seed must be an integer"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"rows": 10, "seed": 0, **kwargs}
    rows = arguments.pop("rows")
    with pytest.raises(InvalidInput) as caught:
        transactions(rows, **arguments)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_single_row_works() -> None:
    assert len(transactions(1, seed=0, drift=1.0)) == 1


def test_drift_shifts_the_named_columns_and_leaves_the_others() -> None:
    reference = transactions(3_000, seed=1)[list(FEATURES)]
    report = drift_report(reference=reference, current=transactions(3_000, seed=2, drift=1.0)[list(FEATURES)])
    assert set(report.drifted_columns) == SHIFTED
    assert {name for name in STABLE if report.columns[name].drifted} == set()
    assert report.drifted  # 4 of 7 columns: over the default drift share of 50%


def test_the_same_regime_with_another_seed_does_not_drift() -> None:
    reference = transactions(3_000, seed=1)[list(FEATURES)]
    report = drift_report(reference=reference, current=transactions(3_000, seed=2)[list(FEATURES)])
    assert report.drifted_columns == []


def _fit(frame: pd.DataFrame) -> Any:
    return tabular.train(
        frame[[*FEATURES, TARGET]],
        target=TARGET,
        estimator="RandomForestClassifier",
        params={"n_estimators": 30, "min_samples_leaf": 20},
    )


def _auc(model: Any, frame: pd.DataFrame) -> float:
    return float(roc_auc_score(frame[TARGET], model.predict_proba(frame[list(FEATURES)])[:, 1]))


def test_the_concept_change_costs_an_old_model_its_ranking_and_a_new_model_learns_it() -> None:
    old_model = _fit(transactions(4_000, seed=10))
    new_model = _fit(transactions(4_000, seed=11, drift=1.0))
    old_rows = transactions(3_000, seed=12)
    new_rows = transactions(3_000, seed=13, drift=1.0)
    old_on_old, old_on_new, new_on_new = (
        _auc(old_model, old_rows),
        _auc(old_model, new_rows),
        _auc(new_model, new_rows),
    )
    assert old_on_old > 0.85
    assert new_on_new > 0.85
    assert old_on_new < new_on_new - 0.1
