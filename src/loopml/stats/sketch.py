"""DDSketch-style quantile sketch: log-spaced buckets with a guaranteed relative accuracy, merged exactly.

A positive value x falls in bucket k = ceil(log_gamma(x)), gamma = (1 + alpha) / (1 - alpha), which covers
(gamma**(k-1), gamma**k]; negative values go to a second store by |x|, exact zeros to a counter. A quantile is
read as the bucket holding the element of rank floor(q * (n - 1)) (numpy's method="lower") and answered with
the bucket's midpoint 2 * gamma**k / (gamma + 1), whose relative distance to every value in the bucket is at
most alpha (Masson, Rim and Lee, "DDSketch", VLDB 2019). So, with alpha=0.01:

    |quantile(q) - x_lower(q)| <= 0.01 * |x_lower(q)|     for every q and every data distribution,

provided the element is not in a collapsed bucket (below). Merging adds bucket counts, so the sketch of two
chunks is exactly the sketch of their concatenation.

Each store keeps at most `max_buckets` consecutive keys (2048 by default, ~18 orders of magnitude at
alpha=0.01): when the span grows larger, the buckets of smallest magnitude are folded into the lowest kept one.
Only values that tiny (relative to the column's largest value of the same sign) lose the guarantee.
Folding is idempotent, so merged sketches still equal the sketch of the whole.

Stores are dense: an offset (first key) and the counts of consecutive keys, trimmed so that the first and last
counts are non-zero, which makes equal data give equal sketches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.encoding import float_in, int_in, pack_uints, unpack_uints

DEFAULT_ALPHA = 0.01
DEFAULT_MAX_BUCKETS = 2048

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BucketStore:
    """Counts of consecutive bucket keys starting at `offset` (first and last count non-zero, or empty)."""

    offset: int = 0
    counts: tuple[int, ...] = ()

    @classmethod
    def from_keys(cls, keys: IntArray, max_buckets: int) -> BucketStore:
        """Count bucket keys, folding keys below `max(keys) - max_buckets + 1` into that lowest kept key."""
        if keys.size == 0:
            return cls()
        high = int(keys.max())
        low = max(int(keys.min()), high - max_buckets + 1)
        return cls(low, tuple(np.bincount(np.maximum(keys, low) - low).tolist()))

    @classmethod
    def from_array(cls, offset: int, counts: IntArray, max_buckets: int) -> BucketStore:
        """Canonical store from dense counts: trimmed of zero ends, folded to `max_buckets` keys."""
        nonzero = np.flatnonzero(counts)
        if nonzero.size == 0:
            return cls()
        counts = counts[nonzero[0] : nonzero[-1] + 1]
        offset += int(nonzero[0])
        if counts.size > max_buckets:
            # Fold the smallest magnitudes into the lowest kept key; the first count stays non-zero.
            fold = counts.size - max_buckets
            folded = counts[fold:].copy()
            folded[0] += counts[:fold].sum()
            counts, offset = folded, offset + fold
        return cls(offset, tuple(counts.tolist()))

    @property
    def total(self) -> int:
        """Number of values in the store."""
        return sum(self.counts)

    def array(self) -> IntArray:
        """The counts as an int64 array."""
        return np.asarray(self.counts, dtype=np.int64)

    def merge(self, other: BucketStore, max_buckets: int) -> BucketStore:
        """Add the counts of both stores, folding the lowest keys if the span exceeds `max_buckets`."""
        if not other.counts:
            return self
        if not self.counts:
            return other
        low = min(self.offset, other.offset)
        high = max(self.offset + len(self.counts), other.offset + len(other.counts))
        merged = np.zeros(high - low, dtype=np.int64)
        merged[self.offset - low : self.offset - low + len(self.counts)] += self.array()
        merged[other.offset - low : other.offset - low + len(other.counts)] += other.array()
        return BucketStore.from_array(low, merged, max_buckets)


@dataclass(frozen=True)
class QuantileSketch:
    """Relative-error quantile sketch of finite values; see the module docstring for the guarantee."""

    alpha: float = DEFAULT_ALPHA
    max_buckets: int = DEFAULT_MAX_BUCKETS
    zeros: int = 0
    positive: BucketStore = field(default_factory=BucketStore)
    negative: BucketStore = field(default_factory=BucketStore)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInput(f"sketch relative accuracy alpha must be in (0, 1), got {self.alpha}")
        if self.max_buckets < 1:
            raise InvalidInput(f"sketch max_buckets must be at least 1, got {self.max_buckets}")

    @property
    def gamma(self) -> float:
        """Ratio between consecutive bucket bounds, (1 + alpha) / (1 - alpha)."""
        return (1.0 + self.alpha) / (1.0 - self.alpha)

    @classmethod
    def from_values(
        cls, values: FloatArray, *, alpha: float = DEFAULT_ALPHA, max_buckets: int = DEFAULT_MAX_BUCKETS
    ) -> QuantileSketch:
        """Sketch of finite float64 values (the caller drops NaN and infinities)."""
        empty = cls(alpha=alpha, max_buckets=max_buckets)  # validates the parameters
        log_gamma = math.log(empty.gamma)
        positive = values[values > 0]
        negative = -values[values < 0] if positive.size < values.size else positive[:0]
        zeros = values.size - positive.size - negative.size
        return cls(
            alpha=alpha,
            max_buckets=max_buckets,
            zeros=zeros,
            positive=BucketStore.from_keys(_keys(positive, log_gamma), max_buckets),
            negative=BucketStore.from_keys(_keys(negative, log_gamma), max_buckets),
        )

    @property
    def count(self) -> int:
        """Number of values sketched."""
        return self.zeros + self.positive.total + self.negative.total

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """The sketch of both inputs together (exact: equal to sketching the concatenated values)."""
        if (self.alpha, self.max_buckets) != (other.alpha, other.max_buckets):
            raise InvalidInput(
                f"cannot merge quantile sketches with different settings: alpha={self.alpha}, "
                f"max_buckets={self.max_buckets} vs alpha={other.alpha}, max_buckets={other.max_buckets}"
            )
        return QuantileSketch(
            alpha=self.alpha,
            max_buckets=self.max_buckets,
            zeros=self.zeros + other.zeros,
            positive=self.positive.merge(other.positive, self.max_buckets),
            negative=self.negative.merge(other.negative, self.max_buckets),
        )

    def quantiles(self, qs: FloatArray) -> FloatArray:
        """Estimates of the values of rank floor(q * (n - 1)) for each q in [0, 1]; NaN when empty."""
        n = self.count
        if n == 0:
            return np.full(qs.shape, np.nan)
        neg, pos = self.negative.array(), self.positive.array()
        scale = 2.0 / (self.gamma + 1.0)
        neg_values = -scale * np.power(
            self.gamma, self.negative.offset + np.arange(neg.size, dtype=np.float64)
        )
        pos_values = scale * np.power(
            self.gamma, self.positive.offset + np.arange(pos.size, dtype=np.float64)
        )
        values = np.concatenate([neg_values[::-1], [0.0], pos_values])
        cumulative = np.cumsum(np.concatenate([neg[::-1], [self.zeros], pos]))
        ranks = np.floor(qs * (n - 1))
        return np.asarray(values[np.searchsorted(cumulative, ranks, side="right")], dtype=np.float64)

    def rank(self, points: FloatArray, *, inclusive: bool = False) -> FloatArray:
        """Estimated number of values below each point (at or below it with `inclusive`).

        Within a bucket the count is interpolated linearly in log space, so the error at a point is at most the
        count of the one bucket holding it: values within a relative distance gamma - 1 (~2 alpha) of the point.
        The zero counter is exact.
        """
        points = np.asarray(points, dtype=np.float64)
        neg_total = self.negative.total
        result = np.full(points.shape, float(neg_total))
        if inclusive:
            result[points == 0] += self.zeros
        log_gamma = math.log(self.gamma)
        above = points > 0
        if above.any():
            below, partial = self._below(self.positive, points[above], log_gamma)
            result[above] = neg_total + self.zeros + below + partial
        under = points < 0
        if under.any():
            below, partial = self._below(self.negative, -points[under], log_gamma)
            # values < p < 0 are those with |x| > |p|: everything in the store minus what lies at or below |p|
            result[under] = self.negative.total - below - partial
        return result

    @staticmethod
    def _below(store: BucketStore, magnitudes: FloatArray, log_gamma: float) -> tuple[FloatArray, FloatArray]:
        """(count in buckets wholly below each magnitude, interpolated share of the bucket holding it)."""
        counts = store.array()
        if counts.size == 0:
            return np.zeros(magnitudes.shape), np.zeros(magnitudes.shape)
        cumulative = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
        # Clipping to just outside the stored keys keeps infinite points finite and changes no answer.
        exact = np.clip(np.log(magnitudes) / log_gamma, store.offset - 1.0, store.offset + counts.size + 1.0)
        key = np.ceil(exact)
        index = key - store.offset
        position = np.clip(index, 0, counts.size).astype(np.intp)
        held = np.where((index >= 0) & (index < counts.size), np.append(counts, 0)[position], 0)
        return cumulative[position], (exact - key + 1.0) * held

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (bucket counts packed)."""
        return {
            "type": "ddsketch",
            "alpha": self.alpha,
            "max_buckets": self.max_buckets,
            "zeros": self.zeros,
            "positive": {"offset": self.positive.offset, "counts": pack_uints(self.positive.counts)},
            "negative": {"offset": self.negative.offset, "counts": pack_uints(self.negative.counts)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantileSketch:
        """Inverse of `to_dict`."""
        max_buckets = int_in(data["max_buckets"], what="max_buckets")
        stores = []
        for side in ("positive", "negative"):
            offset = data[side]["offset"]
            if isinstance(offset, bool) or not isinstance(offset, int):
                raise InvalidInput(f"profile field '{side}.offset' must be an integer, got {offset!r}")
            counts = unpack_uints(data[side]["counts"], what=f"{side}.counts")
            store = BucketStore.from_array(offset, counts, max_buckets)
            if store.counts != tuple(counts.tolist()):
                raise InvalidInput(f"profile field '{side}.counts' is not a canonical bucket store; damaged")
            stores.append(store)
        return cls(
            alpha=float_in(data["alpha"], what="alpha"),
            max_buckets=max_buckets,
            zeros=int_in(data["zeros"], what="zeros"),
            positive=stores[0],
            negative=stores[1],
        )


def _keys(magnitudes: FloatArray, log_gamma: float) -> IntArray:
    """Bucket keys ceil(log_gamma(x)) of positive finite values."""
    if magnitudes.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.ceil(np.log(magnitudes) / log_gamma).astype(np.int64)
