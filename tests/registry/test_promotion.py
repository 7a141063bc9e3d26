"""Promotion gates: a worse challenger is refused and a better one promoted on the same held-out rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import InvalidInput
from loopml.registry.gates import GatePolicy
from loopml.registry.promotion import PromotionRefused
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


def rows(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"amount": rng.normal(0, 1, n), "noise": rng.normal(0, 1, n), "region": rng.choice(["n", "s"], n)}
    )
    label = ((frame["amount"] + 0.3 * rng.normal(0, 1, n)) > 0).astype(int)
    return frame, label


def fit(frame: pd.DataFrame, label: pd.Series, columns: list[str]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(frame[columns], label)


@pytest.fixture
def registered(tracker: Tracker) -> tuple[pd.DataFrame, pd.Series]:
    """v1 good (amount), v2 worse (noise only), v3 good on more data; v1 is champion. Returns held-out rows."""
    train, label = rows(0)
    more, more_label = rows(1)
    loopml.models.register("fraud", fit(train, label, ["amount", "noise"]), sample=train[["amount", "noise"]])
    shuffled = label.sample(frac=1, random_state=3).to_numpy()  # labels unrelated to the rows: a worse model
    worse = LogisticRegression(max_iter=1000).fit(train[["amount", "noise"]], shuffled)
    loopml.models.register("fraud", worse, sample=train[["amount", "noise"]])
    both = pd.concat([train, more])
    loopml.models.register(
        "fraud",
        fit(both, pd.concat([label, more_label]), ["amount", "noise"]),
        sample=both[["amount", "noise"]],
    )
    loopml.models.promote("fraud", 1, reason="first champion")  # nobody holds it: no gate to pass
    return rows(2)


def test_a_worse_challenger_is_refused_and_a_better_one_promoted(
    tracker: Tracker, registered: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = registered
    with pytest.raises(PromotionRefused, match=r"beats v1 on roc_auc"):
        loopml.models.promote("fraud", 2, X=x[["amount", "noise"]], y=y)
    assert loopml.models.get("fraud@champion").version == 1
    done = loopml.models.promote(
        "fraud", 3, X=x[["amount", "noise"]], y=y, policy=GatePolicy(min_delta=-0.01)
    )
    assert done.event.to_version == 3
    assert all(g.passed for g in done.gates)
    history = loopml.models.history("fraud", "champion")
    assert [(e.outcome, e.from_version, e.to_version) for e in history] == [
        ("moved", None, 1),
        ("refused", 1, 2),
        ("moved", 1, 3),
    ]
    refused = history[1].gates or []
    assert any(g.get("gate") == "beats v1 on roc_auc" and g.get("passed") is False for g in refused)


def test_promotion_without_evaluation_data_is_refused_while_a_champion_exists(
    tracker: Tracker, registered: tuple[pd.DataFrame, pd.Series]
) -> None:
    with pytest.raises(InvalidInput, match="no evaluation data"):
        loopml.models.promote("fraud", 3)
    with pytest.raises(InvalidInput, match="needs a reason"):
        loopml.models.promote("fraud", 3, force=True)
    forced = loopml.models.promote("fraud", 3, force=True, reason="hotfix, approved by risk")
    assert forced.event.forced


def test_training_rows_are_refused_as_evaluation_rows(
    tracker: Tracker, registered: tuple[pd.DataFrame, pd.Series]
) -> None:
    train, label = rows(0)
    with pytest.raises(InvalidInput, match=r"400 of 400 evaluation rows .* were training rows of fraud@v3"):
        loopml.models.promote("fraud", 3, X=train[["amount", "noise"]], y=label)


def test_thresholds_slices_latency_and_tags_never_pass_by_absence(
    tracker: Tracker, registered: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = registered
    strict = GatePolicy(
        thresholds={"roc_auc": 0.999, "r2": 0.5}, required_tags=("approved-by",), min_delta=-1.0
    )
    with pytest.raises(PromotionRefused) as caught:
        loopml.models.promote("fraud", 3, X=x[["amount", "noise"]], y=y, policy=strict)
    verdicts = {g.gate: g.passed for g in caught.value.gates}
    assert verdicts["threshold roc_auc"] is False
    assert verdicts["threshold r2"] is False  # not computable for a classifier: fails, never passes
    assert verdicts["tag approved-by"] is False
    loose = GatePolicy(thresholds={"roc_auc": 0.8}, max_latency_ms_per_row=1000.0, min_delta=-1.0)
    assert (
        loopml.models.promote("fraud", 3, X=x[["amount", "noise"]], y=y, policy=loose).event.to_version == 3
    )


def test_the_evaluation_dataset_named_at_registration_is_used(tracker: Tracker) -> None:
    train, label = rows(0)
    held, held_label = rows(5)
    loopml.datasets.add("fraud_holdout", held.assign(label=held_label))
    for columns in (["amount", "noise"], ["noise"]):
        loopml.models.register(
            "fraud",
            fit(train, label, columns),
            sample=train[columns],
            eval_dataset="fraud_holdout@v1",
            eval_target="label",
        )
    loopml.models.promote("fraud", 1)
    with pytest.raises(PromotionRefused, match=r"beats v1 on roc_auc"):
        loopml.models.promote("fraud", 2)
