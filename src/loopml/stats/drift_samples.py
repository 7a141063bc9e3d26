"""One side of a drift comparison, read once: a numeric distribution or category counts.

A numeric side is a discrete distribution over its finite values: either the sorted values themselves (raw
rows, each weighing 1) or the atoms of a DDSketch (bucket midpoints with their counts, from a stored profile).
Both answer the same questions exactly for the distribution they hold: `count_le(points)`, `quantile(q)`
(the left-continuous inverse of the CDF), `mass_at(value)`. Nulls and +-inf are counted, never placed.

When the reference is a stored profile, the current side is sketched with the same settings
(`NumericSide.sketched`), so a value lands in the same bucket, and on the same atom, on both sides: the two
sides are compared as equals, and a column whose values all lie in a few buckets (an offset column such as a
year) shows no spurious distance. Its moments (count, mean, std, min, max) are still exact.

A categorical side is exact counts per category; a profile's tail beyond its top categories is `other`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.categorical import CategoricalProfile, count_values
from loopml.stats.numeric import NumericProfile
from loopml.stats.sketch import QuantileSketch

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class NumericSide:
    """A numeric sample: counts, exact moments, and its finite values as a discrete distribution."""

    rows: int  # all rows, nulls and infinities included
    nulls: int
    pos_inf: int
    neg_inf: int
    mean: float  # of the finite values; NaN when there are none
    std: float  # population (ddof=0)
    values: FloatArray  # sorted: the finite values (raw) or the sketch's atoms
    cumulative: IntArray | None  # None: each value counts once; else [0, cumsum of the atoms' counts]
    alpha: float  # relative accuracy of the values: 0 for raw rows, the sketch's alpha for atoms

    @property
    def count(self) -> int:
        """Number of finite values."""
        return int(self.values.size) if self.cumulative is None else int(self.cumulative[-1])

    @property
    def weights(self) -> IntArray:
        """Count of each value (ones for raw rows)."""
        if self.cumulative is None:
            return np.ones(self.values.size, dtype=np.int64)
        return np.diff(self.cumulative)

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> NumericSide:
        """Raw values (floats, ints, bools; NaN is null); sorted once, every answer exact."""
        x, nulls, pos_inf, neg_inf = _finite(values)
        x = np.sort(x)  # a copy: the caller's column is never reordered
        mean, std = _moments(x)
        return cls(x.size + nulls + pos_inf + neg_inf, nulls, pos_inf, neg_inf, mean, std, x, None, 0.0)

    @classmethod
    def sketched(cls, values: npt.ArrayLike, like: QuantileSketch) -> NumericSide:
        """Raw values bucketed as the sketch `like` buckets them (same alpha): comparable with its profile."""
        x, nulls, pos_inf, neg_inf = _finite(values)
        mean, std = _moments(x)
        sketch = QuantileSketch.from_values(x, alpha=like.alpha, max_buckets=like.max_buckets)
        atoms, weights = sketch_atoms(sketch)
        rows = x.size + nulls + pos_inf + neg_inf
        return cls(rows, nulls, pos_inf, neg_inf, mean, std, atoms, _cumulate(weights), like.alpha)

    @classmethod
    def from_profile(cls, profile: NumericProfile) -> NumericSide:
        """A stored profile's side: its exact counts and moments, its sketch's atoms."""
        if not isinstance(profile.sketch, QuantileSketch):
            raise InvalidInput("drift of datetime columns is not supported (their profile has no DDSketch)")
        atoms, weights = sketch_atoms(profile.sketch)
        rows = profile.count + profile.nulls + profile.infinities
        std = profile.std if profile.count else math.nan
        mean = profile.mean if profile.count else math.nan
        cumulative = _cumulate(weights)
        return cls(
            rows,
            profile.nulls,
            profile.pos_inf,
            profile.neg_inf,
            mean,
            std,
            atoms,
            cumulative,
            profile.sketch.alpha,
        )

    def count_le(self, points: FloatArray) -> FloatArray:
        """Number of finite values <= each point."""
        index = np.searchsorted(self.values, points, side="right")
        if self.cumulative is None:
            return index.astype(np.float64)
        return self.cumulative[index].astype(np.float64)

    def quantile(self, qs: FloatArray) -> FloatArray:
        """Q(q) = the smallest value whose CDF is >= q (q in [0, 1]; Q(0) is the minimum)."""
        n = self.count
        target = np.asarray(qs, dtype=np.float64) * n
        if self.cumulative is None:
            index = np.ceil(target).astype(np.int64) - 1
        else:
            index = np.searchsorted(self.cumulative[1:], target, side="left")
        return self.values[np.clip(index, 0, self.values.size - 1)]

    def mass_at(self, value: float) -> float:
        """Number of finite values equal to `value` (for atoms: in the bucket whose midpoint it is)."""
        points = np.array([value])
        below = np.searchsorted(self.values, points, side="left")
        if self.cumulative is None:
            return float(self.count_le(points)[0] - below[0])
        return float(self.count_le(points)[0] - self.cumulative[below[0]])

    def mean_abs(self) -> float:
        """Mean of |x| over the finite values (for the sketch error bound)."""
        if self.cumulative is None:
            return float(np.abs(self.values).mean())
        return float(np.dot(np.abs(self.values), self.weights) / self.count)


@dataclass(frozen=True)
class CategoricalSide:
    """Exact counts per category of one sample; `other` is a profile's tail beyond its kept categories."""

    rows: int
    nulls: int
    counts: Mapping[str, int]
    other: int = 0

    @property
    def count(self) -> int:
        """Number of non-null values."""
        return sum(self.counts.values()) + self.other

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> CategoricalSide:
        """Count the values of a 1-D array (categories are strings, as profiles name them)."""
        counts, nulls = count_values(np.asarray(values))
        return cls(sum(counts.values()) + nulls, nulls, counts)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, nulls: int = 0) -> CategoricalSide:
        """Already counted values (e.g. by pandas' value_counts), with the number of nulls."""
        kept = {str(k): int(v) for k, v in counts.items() if v}
        return cls(sum(kept.values()) + nulls, nulls, kept)

    @classmethod
    def from_profile(cls, profile: CategoricalProfile) -> CategoricalSide:
        """A stored profile's side: its top categories, exact, and the rest as `other`."""
        return cls(profile.count + profile.nulls, profile.nulls, profile.counts, profile.other)


def sketch_atoms(sketch: QuantileSketch) -> tuple[FloatArray, IntArray]:
    """(sorted bucket midpoints, their counts) of a DDSketch, empty buckets left out.

    The midpoints are those `QuantileSketch.quantiles` answers with, so every value is within relative
    `alpha` of its atom; two sketches with the same alpha give bit-identical atoms for the same bucket.
    """
    neg, pos = sketch.negative.array(), sketch.positive.array()
    scale = 2.0 / (sketch.gamma + 1.0)
    neg_values = -scale * np.power(
        sketch.gamma, sketch.negative.offset + np.arange(neg.size, dtype=np.float64)
    )
    pos_values = scale * np.power(
        sketch.gamma, sketch.positive.offset + np.arange(pos.size, dtype=np.float64)
    )
    values = np.concatenate([neg_values[::-1], [0.0], pos_values])
    counts = np.concatenate([neg[::-1], [sketch.zeros], pos]).astype(np.int64)
    kept = counts > 0
    return values[kept], counts[kept]


def _finite(values: npt.ArrayLike) -> tuple[FloatArray, int, int, int]:
    """(finite values as float64, nulls, +inf, -inf) of a 1-D numeric array."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(f"a column must be a 1-D array, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(np.float64)  # object columns of numbers and None
        except (TypeError, ValueError):
            raise InvalidInput(f"cannot compare a column of dtype {array.dtype} as numeric") from None
    x: Any = array.astype(np.float64, copy=False)
    finite = np.isfinite(x)
    if finite.all():
        return x, 0, 0, 0
    pos_inf = int(np.count_nonzero(x == np.inf))
    neg_inf = int(np.count_nonzero(x == -np.inf))
    kept = x[finite]
    return kept, int(x.size - kept.size - pos_inf - neg_inf), pos_inf, neg_inf


def _moments(x: FloatArray) -> tuple[float, float]:
    if x.size == 0:
        return math.nan, math.nan
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(x.mean())
        deviations = x - mean
        return mean, math.sqrt(float(np.dot(deviations, deviations)) / x.size)


def _cumulate(weights: IntArray) -> IntArray:
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(weights, dtype=np.int64)])
