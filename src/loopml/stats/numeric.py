"""Profile of a numeric (or datetime) column: counts, moments, a quantile sketch and a distinct-count sketch.

What is exact and what is estimated, also after any number of merges:

- exact: `count` (finite values), `nulls` (NaN, None, NaT), `pos_inf` / `neg_inf`, `min`, `max`, the sketch's
  bucket counts and zero count, the HLL registers;
- to float rounding (~1e-12 relative): `mean` and `m2` (sum of squared deviations from the mean), combined
  with Chan, Golub and LeVeque's parallel formula;
- `quantile(q)` against numpy's `np.quantile(x, q, method="lower")`: within relative accuracy `alpha` (0.01)
  for numbers (`QuantileSketch`), within half a bucket width (~span/2048) for datetimes (`UniformSketch`);
- `histogram(edges)`: off by at most the values lying in the sketch buckets that hold the edges (within ~2
  alpha relative of an edge for numbers, within one bucket width for datetimes);
- `distinct()`: HyperLogLog, relative standard error 1.6%.

Infinities are counted, not sketched: moments, quantiles, histograms and distinct counts cover finite values.
Datetimes are profiled as nanoseconds since the epoch (min, max, mean as float64, so to ~0.25 microsecond for
present-day dates); their sketch works on the exact int64 values and their distinct count hashes them.
Timedeltas are numbers of nanoseconds. Integers and booleans are converted to float64 (exact up to 2**53).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.encoding import float_in, float_out, int_in, optional_float_in
from loopml.stats.hll import DEFAULT_P, HyperLogLog, hash_bits, hash_floats
from loopml.stats.nulls import is_null
from loopml.stats.sketch import DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS, QuantileSketch
from loopml.stats.uniform import UniformSketch

FloatArray = npt.NDArray[np.float64]
NAT = np.iinfo(np.int64).min  # how numpy stores NaT


@dataclass(frozen=True)
class NumericProfile:
    """Mergeable summary of a numeric column; build with `from_array`, combine with `merge`."""

    count: int = 0
    nulls: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    min: float | None = None
    max: float | None = None
    mean: float = 0.0
    m2: float = 0.0
    sketch: QuantileSketch | UniformSketch = field(default_factory=QuantileSketch)
    hll: HyperLogLog = field(default_factory=HyperLogLog)

    @classmethod
    def from_array(
        cls,
        values: npt.ArrayLike,
        *,
        alpha: float = DEFAULT_ALPHA,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        p: int = DEFAULT_P,
    ) -> NumericProfile:
        """Profile a 1-D array of floats, ints, bools, datetime64/timedelta64, or objects convertible to float.

        Datetimes get a `UniformSketch` (absolute error; `alpha` does not apply), everything else a
        `QuantileSketch` (relative error `alpha`).
        """
        finite, nulls, pos_inf, neg_inf, hashes, instants = _finite_values(np.asarray(values))
        n = int(finite.size)
        sketch: QuantileSketch | UniformSketch
        if instants is None:
            sketch = QuantileSketch.from_values(finite, alpha=alpha, max_buckets=max_buckets)
        else:
            sketch = UniformSketch.from_values(instants, max_buckets=max_buckets)
        hll = HyperLogLog.from_hashes(hashes, p=p)
        if n == 0:
            return cls(nulls=nulls, pos_inf=pos_inf, neg_inf=neg_inf, sketch=sketch, hll=hll)
        # Sums of values beyond ~1e154 may overflow to inf: reported as such, not raised.
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(finite.mean())
            deviations = finite - mean
            m2 = float(np.dot(deviations, deviations))
        return cls(
            count=n,
            nulls=nulls,
            pos_inf=pos_inf,
            neg_inf=neg_inf,
            min=float(finite.min()),
            max=float(finite.max()),
            mean=mean,
            m2=m2,
            sketch=sketch,
            hll=hll,
        )

    @property
    def infinities(self) -> int:
        """Number of +inf and -inf values (excluded from moments, quantiles and distinct counts)."""
        return self.pos_inf + self.neg_inf

    @property
    def zeros(self) -> int | None:
        """Number of values exactly zero; None for datetimes (their sketch does not single out the epoch)."""
        return self.sketch.zeros if isinstance(self.sketch, QuantileSketch) else None

    @property
    def variance(self) -> float:
        """Population variance (ddof=0) of the finite values; NaN when there are none."""
        return self.m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0) of the finite values; NaN when there are none."""
        return math.sqrt(self.variance) if self.count else math.nan

    def distinct(self) -> float:
        """Estimated number of distinct finite values (HyperLogLog; relative standard error 1.6%)."""
        return self.hll.estimate()

    def merge(self, other: NumericProfile) -> NumericProfile:
        """The profile of both chunks together (see the module docstring for what is exact)."""
        n = self.count + other.count
        if other.count == 0:
            mean, m2 = self.mean, self.m2
        elif self.count == 0:
            mean, m2 = other.mean, other.m2
        else:  # Chan et al.: exact in exact arithmetic, stable in floating point
            with np.errstate(over="ignore", invalid="ignore"):
                delta = other.mean - self.mean
                mean = self.mean + delta * (other.count / n)
                m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / n)
        return NumericProfile(
            count=n,
            nulls=self.nulls + other.nulls,
            pos_inf=self.pos_inf + other.pos_inf,
            neg_inf=self.neg_inf + other.neg_inf,
            min=_pick(min, self.min, other.min),
            max=_pick(max, self.max, other.max),
            mean=mean,
            m2=m2,
            sketch=_merge_sketches(self.sketch, other.sketch),
            hll=self.hll.merge(other.hll),
        )

    def quantile(self, q: float) -> float:
        """Estimate of `np.quantile(finite, q, method="lower")`, within relative `alpha`; NaN when empty."""
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float] | npt.ArrayLike) -> FloatArray:
        """`quantile` for many q at once, vectorised; q=0 and q=1 give min and max exactly."""
        q = np.asarray(qs, dtype=np.float64)
        if q.ndim != 1 or not np.all((q >= 0.0) & (q <= 1.0)):
            raise InvalidInput("quantile levels must be a 1-D sequence of numbers in [0, 1]")
        estimates = self.sketch.quantiles(q)
        if self.min is None or self.max is None:
            return estimates
        # The extremes are known exactly; in between, clipping can only bring an estimate closer.
        return np.where(
            q == 0.0, self.min, np.where(q == 1.0, self.max, np.clip(estimates, self.min, self.max))
        )

    def histogram(self, edges: Sequence[float] | npt.ArrayLike) -> FloatArray:
        """Estimated counts of finite values in bins [e0, e1), [e1, e2), ..., [e_k-1, e_k], like np.histogram.

        Edges may be infinite (open first and last bins). The estimate is interpolated from the sketch and
        clipped by min and max; a bin's count is off by at most the values within ~2 alpha (relative) of its
        edges. Infinite values are never counted: read `pos_inf` and `neg_inf` for them.
        """
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or np.isnan(e).any() or np.any(np.diff(e) <= 0):
            raise InvalidInput("histogram edges must be a 1-D sequence of at least 2 increasing numbers")
        if self.min is None or self.max is None:
            return np.zeros(e.size - 1)
        below = self.sketch.rank(e[:-1])
        below = np.where(e[:-1] <= self.min, 0.0, np.where(e[:-1] > self.max, self.count, below))
        last = e[-1:]
        at_or_below_last = self.sketch.rank(last, inclusive=True)
        at_or_below_last = np.where(
            last < self.min, 0.0, np.where(last >= self.max, self.count, at_or_below_last)
        )
        return np.maximum(np.diff(np.concatenate([below, at_or_below_last])), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (strict JSON: non-finite floats become strings)."""
        return {
            "count": self.count,
            "nulls": self.nulls,
            "pos_inf": self.pos_inf,
            "neg_inf": self.neg_inf,
            "min": None if self.min is None else float_out(self.min),
            "max": None if self.max is None else float_out(self.max),
            "mean": float_out(self.mean),
            "m2": float_out(self.m2),
            "sketch": self.sketch.to_dict(),
            "hll": self.hll.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        """Inverse of `to_dict`."""
        profile = cls(
            count=int_in(data["count"], what="count"),
            nulls=int_in(data["nulls"], what="nulls"),
            pos_inf=int_in(data["pos_inf"], what="pos_inf"),
            neg_inf=int_in(data["neg_inf"], what="neg_inf"),
            min=optional_float_in(data["min"], what="min"),
            max=optional_float_in(data["max"], what="max"),
            mean=float_in(data["mean"], what="mean"),
            m2=float_in(data["m2"], what="m2"),
            sketch=_sketch_from_dict(data["sketch"]),
            hll=HyperLogLog.from_dict(data["hll"]),
        )
        if profile.sketch.count != profile.count or (profile.min is None) != (profile.count == 0):
            raise InvalidInput(
                "numeric profile is inconsistent (count, min/max and sketch disagree); damaged"
            )
        return profile


def _pick(choose: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(choose(a, b))


def _merge_sketches(
    a: QuantileSketch | UniformSketch, b: QuantileSketch | UniformSketch
) -> QuantileSketch | UniformSketch:
    if isinstance(a, QuantileSketch) and isinstance(b, QuantileSketch):
        return a.merge(b)
    if isinstance(a, UniformSketch) and isinstance(b, UniformSketch):
        return a.merge(b)
    raise InvalidInput("cannot merge the profile of a datetime column with that of a numeric column")


def _sketch_from_dict(data: Mapping[str, Any]) -> QuantileSketch | UniformSketch:
    kind = data.get("type")
    if kind == "ddsketch":
        return QuantileSketch.from_dict(data)
    if kind == "uniform":
        return UniformSketch.from_dict(data)
    raise InvalidInput(f"unknown sketch type {kind!r}; expected 'ddsketch' or 'uniform'")


class _Split(NamedTuple):
    finite: FloatArray  # finite values as float64
    nulls: int
    pos_inf: int
    neg_inf: int
    hashes: npt.NDArray[np.uint64]  # of the finite values
    instants: npt.NDArray[np.int64] | None  # datetimes only: the exact int64 nanoseconds


def _finite_values(values: npt.NDArray[Any]) -> _Split:
    if values.ndim != 1:
        raise InvalidInput(f"a column must be a 1-D array, got {values.ndim} dimensions")
    kind = values.dtype.kind
    if kind in "mM":  # datetime64 / timedelta64 -> int64 nanoseconds; NaT is null
        unit = "datetime64[ns]" if kind == "M" else "timedelta64[ns]"
        ns = values.astype(unit).view(np.int64)
        present = ns != NAT
        kept = ns[present] if not present.all() else ns
        instants = kept if kind == "M" else None
        return _Split(kept.astype(np.float64), int(ns.size - kept.size), 0, 0, hash_bits(kept), instants)
    if kind in "fiub":
        x = values.astype(np.float64, copy=False)
    elif kind == "O":
        x = _object_floats(values)
    else:
        raise InvalidInput(f"cannot profile a column of dtype {values.dtype} as numeric")
    finite_mask = np.isfinite(x)
    if finite_mask.all():
        return _Split(x, 0, 0, 0, hash_floats(x), None)
    finite = x[finite_mask]
    pos_inf = int(np.count_nonzero(x == np.inf))
    neg_inf = int(np.count_nonzero(x == -np.inf))
    nulls = int(x.size - finite.size - pos_inf - neg_inf)
    return _Split(finite, nulls, pos_inf, neg_inf, hash_floats(finite), None)


def _object_floats(values: npt.NDArray[Any]) -> FloatArray:
    """Objects -> float64 with NaN for nulls (None, NaN, pandas NA/NaT); refuses values that are not numbers."""
    try:
        return values.astype(np.float64)  # None -> NaN: the fast path
    except (TypeError, ValueError):
        pass
    null = np.frompyfunc(is_null, 1, 1)(values).astype(bool)  # e.g. pandas.NA from nullable Int64 columns
    result = np.full(values.shape, np.nan)
    try:
        result[~null] = values[~null].astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(
            "cannot profile this object column as numeric: it holds values that are not numbers"
        ) from None
    return result
