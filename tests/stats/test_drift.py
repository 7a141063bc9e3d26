"""Drift math: exact Wasserstein, the sketch error bound, PSI/JS/tests, FDR, defaults and edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from loopml.core.errors import InvalidInput
from loopml.stats import CategoricalProfile, NumericProfile
from loopml.stats.drift import categorical_drift, dataset_drift, numeric_drift
from loopml.stats.drift_config import ColumnDriftConfig, DriftConfig
from loopml.stats.drift_samples import CategoricalSide, NumericSide
from loopml.stats.drift_tests import adjust_pvalues, jensen_shannon, psi, wasserstein, wasserstein_error

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=60)


@given(samples, samples)
@settings(max_examples=200, deadline=None)
def test_raw_wasserstein_equals_scipy(a: list[float], b: list[float]) -> None:
    ours = wasserstein(NumericSide.from_values(a), NumericSide.from_values(b))
    assert ours == pytest.approx(wasserstein_distance(a, b), rel=1e-9, abs=1e-6)


@given(samples)
@settings(max_examples=100, deadline=None)
def test_identical_samples_have_zero_distance(a: list[float]) -> None:
    side = NumericSide.from_values(a)
    assert wasserstein(side, side) == 0.0
    profile = NumericProfile.from_array(np.asarray(a))
    sketched = NumericSide.from_profile(profile)
    assert wasserstein(sketched, NumericSide.sketched(np.asarray(a), profile.sketch)) == 0.0  # type: ignore[arg-type]


@given(samples, samples)
@settings(max_examples=200, deadline=None)
def test_profile_wasserstein_is_within_the_stated_bound(a: list[float], b: list[float]) -> None:
    profile = NumericProfile.from_array(np.asarray(a))
    ref = NumericSide.from_profile(profile)
    cur = NumericSide.sketched(np.asarray(b), profile.sketch)  # type: ignore[arg-type]
    exact = wasserstein_distance(a, b)
    assert abs(wasserstein(ref, cur) - exact) <= wasserstein_error(ref, cur) * (1 + 1e-9) + 1e-6


def test_profile_wasserstein_bound_on_large_samples() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(size=200_000), rng.lognormal(0.1, size=150_000)
    profile = NumericProfile.from_array(a)
    ref, cur = NumericSide.from_profile(profile), NumericSide.sketched(b, profile.sketch)  # type: ignore[arg-type]
    exact = wasserstein_distance(a, b)
    error = wasserstein_error(ref, cur)
    assert abs(wasserstein(ref, cur) - exact) <= error
    assert error < 0.03 * (a.mean() + b.mean())


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30))
def test_fdr_adjusted_pvalues_are_monotone_and_not_below_raw(p: list[float]) -> None:
    adjusted = adjust_pvalues(p, "bh")
    order = np.argsort(p)
    assert all(adjusted[i] >= p[i] - 1e-12 for i in range(len(p)))
    assert all(adjusted[order[k]] <= adjusted[order[k + 1]] + 1e-12 for k in range(len(p) - 1))
    assert all(x <= 1.0 for x in adjusted)
    bonferroni = adjust_pvalues(p, "bonferroni")
    assert all(b >= a - 1e-12 for a, b in zip(adjusted, bonferroni, strict=True))


def test_bh_matches_the_textbook_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_pvalues(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_pvalues([0.2, math.nan]) == [0.2, pytest.approx(math.nan, nan_ok=True)]


def test_distance_basics() -> None:
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.sqrt(math.log(2)))
    assert psi(p, p) == 0.0
    assert math.isfinite(psi(p, q))
    assert psi(p, q) > 0


def test_defaults_pick_the_primary_method_by_sample_size() -> None:
    rng = np.random.default_rng(0)
    big, small = rng.normal(size=5000), rng.normal(size=500)
    ref = NumericSide.from_values(big)
    assert numeric_drift("x", ref, NumericSide.from_values(rng.normal(size=5000))).method == "wasserstein"
    assert numeric_drift("x", ref, NumericSide.from_values(small)).method == "ks"
    cats = CategoricalSide.from_values(np.array(["a", "b"] * 2000))
    assert categorical_drift("c", cats, cats).method == "jensen_shannon"
    assert (
        categorical_drift("c", cats, CategoricalSide.from_values(np.array(["a", "b"] * 100))).method == "chi2"
    )


def test_known_shift_is_flagged_and_same_distribution_is_not() -> None:
    rng = np.random.default_rng(1)
    ref = NumericSide.from_values(rng.normal(size=50_000))
    same = numeric_drift("x", ref, NumericSide.from_values(rng.normal(size=50_000)))
    moved = numeric_drift("x", ref, NumericSide.from_values(rng.normal(0.3, 1, size=50_000)))
    assert not same.drifted
    assert same.psi_level == "ok"
    assert moved.drifted
    assert moved.score == pytest.approx(0.3, abs=0.03)
    assert moved.scores["psi"] > 0.05


def test_small_samples_use_the_test_and_fdr_decides() -> None:
    rng = np.random.default_rng(2)
    ref = NumericSide.from_values(rng.normal(size=800))
    results = [
        numeric_drift("shifted", ref, NumericSide.from_values(rng.normal(1.0, 1, size=300))),
        numeric_drift("same", ref, NumericSide.from_values(rng.normal(size=300))),
    ]
    summary = dataset_drift(results)
    shifted, same = summary.columns
    assert shifted.method == "ks"
    assert shifted.drifted
    assert shifted.score is not None
    assert shifted.score < 0.05
    assert not same.drifted
    assert same.score is not None
    assert same.p_value is not None
    assert same.score >= same.p_value


def test_zero_reference_variance_scores_the_share_that_changed() -> None:
    ref = NumericSide.from_values(np.full(5000, 7.0))
    unchanged = numeric_drift("k", ref, NumericSide.from_values(np.full(3000, 7.0)))
    assert unchanged.method == "changed_share"
    assert unchanged.score == 0.0
    assert not unchanged.drifted
    some = numeric_drift("k", ref, NumericSide.from_values(np.r_[np.full(2700, 7.0), np.full(300, 8.0)]))
    assert some.score == pytest.approx(0.1)
    assert some.drifted
    profile = NumericProfile.from_array(np.full(5000, 7.0))
    side = NumericSide.sketched(np.r_[np.full(2900, 7.0), np.full(100, 8.0)], profile.sketch)  # type: ignore[arg-type]
    assert numeric_drift("k", NumericSide.from_profile(profile), side).score == pytest.approx(100 / 3000)


def test_empty_and_all_null_and_infinite_columns_are_findings_not_drift() -> None:
    ref = NumericSide.from_values(np.arange(2000.0))
    empty = numeric_drift("x", ref, NumericSide.from_values(np.array([])))
    nulls = numeric_drift("x", ref, NumericSide.from_values(np.full(2000, np.nan)))
    infs = numeric_drift("x", ref, NumericSide.from_values(np.r_[np.full(10, np.inf), [np.nan]]))
    assert (empty.status, nulls.status, infs.status) == ("empty", "all_null", "all_null")
    assert not any(r.drifted for r in (empty, nulls, infs))
    assert infs.current is not None
    assert infs.current.infinities == 10
    assert infs.current.nulls == 1
    summary = dataset_drift([empty, nulls])
    assert summary.compared == 0
    assert summary.share is None
    assert not summary.drifted
    mixed = numeric_drift("x", ref, NumericSide.from_values(np.r_[np.arange(2000.0), [np.inf, -np.inf]]))
    assert mixed.score == 0.0
    assert mixed.current is not None
    assert mixed.current.infinities == 2


def test_unseen_categories_get_their_own_bin() -> None:
    ref = CategoricalSide.from_values(np.array(["a", "b"] * 5000))
    cur = CategoricalSide.from_values(np.array(["a", "b"] * 4000 + ["new"] * 2000))
    result = categorical_drift("c", ref, cur)
    assert result.unseen == 2000
    assert result.drifted
    assert result.histogram is not None
    assert "new" in result.histogram.labels
    assert math.isfinite(result.scores["psi"])


def test_truncated_reference_profile_compares_tails() -> None:
    values = np.array([f"v{i % 30}" for i in range(30_000)])
    profile = CategoricalProfile.from_array(values, max_categories=10)
    result = categorical_drift(
        "c", CategoricalSide.from_profile(profile), CategoricalSide.from_values(values)
    )
    assert result.unseen == 0
    assert result.score == pytest.approx(0.0, abs=1e-12)
    assert not result.drifted


def test_psi_bins_come_from_the_reference_and_handle_ties() -> None:
    ref = NumericSide.from_values(np.r_[np.zeros(7000), np.ones(3000)])
    cur = NumericSide.from_values(np.r_[np.zeros(7000), np.ones(2000), np.full(1000, 2.0)])
    result = numeric_drift("binary", ref, cur)
    assert result.scores["psi"] > 0.25
    assert result.psi_level == "alert"


def test_weighted_share_and_verdict() -> None:
    rng = np.random.default_rng(5)
    ref = NumericSide.from_values(rng.normal(size=4000))
    moved = numeric_drift("a", ref, NumericSide.from_values(rng.normal(1, 1, size=4000)))
    same = numeric_drift("b", ref, NumericSide.from_values(rng.normal(size=4000)))
    plain = dataset_drift([moved, same])
    assert plain.share == 0.5
    assert plain.drifted
    weighted = dataset_drift([moved, same], feature_importance={"a": 1.0, "b": 9.0})
    assert weighted.weighted_share == pytest.approx(0.1)
    assert not weighted.drifted
    with pytest.raises(InvalidInput):
        dataset_drift([moved], feature_importance={"a": -1.0})


def test_config_is_stored_verbatim_validated_and_json_able() -> None:
    config = DriftConfig(
        numeric=ColumnDriftConfig(threshold=0.2),
        columns={"age": ColumnDriftConfig(method="psi", psi_bins=20)},
        drift_share=0.3,
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert DriftConfig.from_dict(data) == config
    assert config.for_column("age", "numeric").psi_bins == 20
    assert config.numeric.resolve("numeric", 5000, 5000) == ("wasserstein", 0.2)
    assert ColumnDriftConfig().resolve("categorical", 10, 5000) == ("chi2", 0.05)
    for bad in ({"method": "magic"}, {"threshold": -1}, {"psi_bins": 1}, {"psi_warn": 0.3, "psi_alert": 0.2}):
        with pytest.raises(InvalidInput):
            ColumnDriftConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        DriftConfig(drift_share=0)
    with pytest.raises(InvalidInput):
        ColumnDriftConfig(method="jensen_shannon").resolve("numeric", 5000, 5000)
    with pytest.raises(InvalidInput):
        DriftConfig.from_dict({"shares": 1})
