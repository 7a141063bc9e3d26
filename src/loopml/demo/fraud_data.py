"""Synthetic card transactions for the demo: a fraud stream whose inputs and fraud pattern change together.

    frame = transactions(20_000, seed=0)                  # the original regime
    later = transactions(5_000, seed=1, drift=1.0)        # the new regime
    FEATURES                                              # the model's input columns, in order

`drift` in [0, 1] moves every parameter linearly from the original regime (0) to the new one (1):

- input shift: `amount` grows (log-normal median about 40 -> 90), the merchant mix moves toward
  electronics, gaming and online shops, more transactions are made abroad (`country`: home share 88% -> 70%)
  and `distance_km` grows; `hour`, `card_age_days` and `txn_last_hour` keep their distribution. Features are
  drawn first and fraud from them, so the fraud pattern does not leak into the inputs' marginals: 4 of the 7
  columns drift, above the default dataset drift share of 50%.
- concept change: in regime 0 fraud is large purchases, abroad and far from home, on new cards, in travel and
  electronics, at night. In regime 1 it is card testing: small purchases in quick succession (`txn_last_hour`)
  at online, gaming and electronics merchants, at night, whatever the card's age or the country. A model of
  regime 0 ranks regime-1 fraud worse than chance (large amounts and foreign countries no longer mean
  fraud); one trained on regime 1 does well.

Fraud is drawn from a logistic score of the features, so the label is noisy: a tree ensemble reaches a ROC AUC
of about 0.9-0.95 on fresh rows of its own regime. The base rate is about 5% at every drift. Every value comes
from one `numpy.random.Generator` seeded with `seed`: the same arguments give the same frame.
"""

from __future__ import annotations

from typing import NamedTuple, TypeGuard

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopml.core.errors import InvalidInput

__all__ = ["FEATURES", "TARGET", "TIME", "transactions"]

FEATURES: tuple[str, ...] = (
    "amount",
    "hour",
    "merchant_category",
    "country",
    "card_age_days",
    "distance_km",
    "txn_last_hour",
)
"""The model's input columns, in order (`time_ms` says when a transaction happened, not whether it is fraud)."""

TARGET = "is_fraud"
"""The label column: 1 for fraud, 0 otherwise."""

TIME = "time_ms"
"""When the transaction happened, in milliseconds from the origin `start_ms` sets; rows are sorted by it."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MERCHANTS = ("grocery", "fuel", "restaurant", "retail", "travel", "electronics", "gaming", "online")
_MERCHANTS_OLD = np.array([0.26, 0.15, 0.18, 0.17, 0.07, 0.08, 0.03, 0.06])
_MERCHANTS_NEW = np.array([0.12, 0.07, 0.10, 0.11, 0.06, 0.18, 0.16, 0.20])

COUNTRIES = ("US", "CA", "MX", "GB", "DE", "FR", "BR", "NG")
HOME = "US"
_COUNTRIES_OLD = np.array([0.88, 0.035, 0.025, 0.015, 0.012, 0.01, 0.012, 0.011])
_COUNTRIES_NEW = np.array([0.70, 0.06, 0.05, 0.04, 0.04, 0.03, 0.04, 0.04])

# Share of transactions per hour of the day: quiet at night, busiest around noon and early evening.
_HOURLY = np.array([
    1.0, 0.7, 0.5, 0.4, 0.4, 0.6, 1.2, 2.2, 3.5, 4.5, 5.2, 5.8,
    6.2, 6.0, 5.6, 5.4, 5.6, 6.2, 6.6, 6.2, 5.2, 4.0, 2.8, 1.6,
])  # fmt: skip
_HOURLY = _HOURLY / _HOURLY.sum()
_NIGHT = (0, 1, 2, 3, 4, 5)

# Log-normal location of `amount` and of the domestic part of `distance_km` in regime 0 and regime 1.
_AMOUNT_MU = (3.7, 4.5)
_AMOUNT_SIGMA = 1.0
_DISTANCE_MU = (2.3, 3.9)
_DISTANCE_SIGMA = 1.0
# Intercepts of each pattern at these drifts (interpolated between), calibrated on 2,000,000 rows so that
# each pattern alone would flag 5% of the rows drawn at that drift: the base rate stays near 5% throughout.
_DRIFTS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_INTERCEPT_OLD = np.array([-6.01, -6.78, -7.45, -8.04, -8.59])
_INTERCEPT_NEW = np.array([-5.89, -5.83, -5.75, -5.65, -5.52])


def transactions(
    rows: int, *, seed: int, drift: float = 0.0, start_ms: int = 0, span_ms: int = 3_600_000
) -> pd.DataFrame:
    """`rows` card transactions: the `FEATURES`, then `is_fraud` (0/1) and `time_ms`, sorted by time.

    `drift` (0 to 1) moves the inputs and the fraud pattern from the original regime to the new one (see the
    module docstring); `time_ms` is uniform in [start_ms, start_ms + span_ms). Raises InvalidInput for
    rows < 1, drift outside [0, 1] or span_ms < 1.
    """
    _check(rows, seed=seed, drift=drift, start_ms=start_ms, span_ms=span_ms)
    rng = np.random.default_rng(seed)
    d = float(drift)

    inputs = _inputs(rng, rows, d)
    old, new = _fraud_scores(inputs)
    # A share `d` of fraudsters has moved to the new pattern: the chance of fraud mixes the two patterns,
    # each with the intercept that keeps its own rate near 5% at this drift.
    chance = (1 - d) * _sigmoid(old + np.interp(d, _DRIFTS, _INTERCEPT_OLD))
    chance += d * _sigmoid(new + np.interp(d, _DRIFTS, _INTERCEPT_NEW))
    fraud = (rng.random(rows) < chance).astype(np.int64)

    times = np.sort(rng.integers(start_ms, start_ms + span_ms, size=rows, dtype=np.int64))
    return pd.DataFrame(
        {
            "amount": inputs.amount,
            "hour": inputs.hour,
            "merchant_category": np.array(MERCHANTS, dtype=object)[inputs.merchant],
            "country": np.array(COUNTRIES, dtype=object)[inputs.country],
            "card_age_days": inputs.card_age,
            "distance_km": inputs.distance,
            "txn_last_hour": inputs.velocity,
            TARGET: fraud,
            TIME: times,
        }
    )


class _Inputs(NamedTuple):
    """The feature values of a batch of transactions, one array per feature."""

    amount: FloatArray
    hour: IntArray
    merchant: IntArray  # index into MERCHANTS
    country: IntArray  # index into COUNTRIES
    card_age: IntArray
    distance: FloatArray
    velocity: IntArray


def _inputs(rng: np.random.Generator, rows: int, d: float) -> _Inputs:
    """The feature values of `rows` transactions at drift `d` (drawn before, and independently of, fraud)."""
    merchant_shares = (1 - d) * _MERCHANTS_OLD + d * _MERCHANTS_NEW
    merchant = rng.choice(len(MERCHANTS), size=rows, p=merchant_shares / merchant_shares.sum())
    country_shares = (1 - d) * _COUNTRIES_OLD + d * _COUNTRIES_NEW
    country = rng.choice(len(COUNTRIES), size=rows, p=country_shares / country_shares.sum())
    hour = rng.choice(24, size=rows, p=_HOURLY)
    amount = np.round(rng.lognormal(_lerp(_AMOUNT_MU, d), _AMOUNT_SIGMA, size=rows), 2) + 0.5
    card_age = np.minimum(np.floor(rng.lognormal(5.5, 1.3, size=rows)), 5000).astype(np.int64)
    foreign = country != COUNTRIES.index(HOME)
    # Abroad, the card is far from its home address.
    far = foreign * rng.lognormal(6.4, 0.6, size=rows)
    distance = np.round(rng.lognormal(_lerp(_DISTANCE_MU, d), _DISTANCE_SIGMA, size=rows) + far, 1)
    # Transactions of the card in the last hour: a gamma-Poisson mixture, mostly 0-2 with a long tail.
    velocity = rng.poisson(rng.gamma(0.9, 1.2, size=rows)).astype(np.int64)
    return _Inputs(amount, hour.astype(np.int64), merchant, country, card_age, distance, velocity)


def _fraud_scores(x: _Inputs) -> tuple[FloatArray, FloatArray]:
    """The logits (before intercepts) of the original and of the new fraud pattern."""
    night = np.isin(x.hour, _NIGHT)
    z_amount = (np.log(x.amount) - _AMOUNT_MU[0]) / _AMOUNT_SIGMA
    z_distance = (np.log1p(x.distance) - _DISTANCE_MU[0]) / _DISTANCE_SIGMA
    foreign = x.country != COUNTRIES.index(HOME)
    new_card = x.card_age < 60
    travel = np.isin(x.merchant, [MERCHANTS.index(m) for m in ("travel", "electronics")])
    online = np.isin(x.merchant, [MERCHANTS.index(m) for m in ("online", "gaming", "electronics")])
    old = 1.3 * z_amount + 1.6 * foreign + 1.6 * new_card + 0.7 * z_distance + 1.0 * night + 1.0 * travel
    new = -1.4 * z_amount + 0.9 * np.minimum(x.velocity, 6) + 1.8 * online + 1.1 * night
    return old, new


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1 / (1 + np.exp(-x))


def _lerp(pair: tuple[float, float], d: float) -> float:
    return (1 - d) * pair[0] + d * pair[1]


def _check(rows: object, *, seed: object, drift: object, start_ms: object, span_ms: object) -> None:
    if not _is_int(rows) or rows < 1:
        raise InvalidInput(f"rows must be an integer >= 1, got {rows!r}")
    if not _is_int(seed):
        raise InvalidInput(f"seed must be an integer, got {seed!r}")
    if isinstance(drift, bool) or not isinstance(drift, int | float) or not 0 <= drift <= 1:
        raise InvalidInput(f"drift must be a number in [0, 1] (0: original regime, 1: new), got {drift!r}")
    if not _is_int(start_ms):
        raise InvalidInput(f"start_ms must be an integer, got {start_ms!r}")
    if not _is_int(span_ms) or span_ms < 1:
        raise InvalidInput(f"span_ms must be an integer >= 1, got {span_ms!r}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
