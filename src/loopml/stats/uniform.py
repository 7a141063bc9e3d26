"""Equal-width quantile sketch with an absolute error bound, for datetimes (int64 nanoseconds).

A relative-error sketch is the wrong tool for timestamps: 1% of the time since 1970 is about seven months.
This sketch buckets integers by `value >> level`, i.e. into buckets of width 2**level units aligned at
multiples of the width, with the smallest level that keeps the column's span within `max_buckets` (2048)
buckets. So, for a column spanning S units:

    |quantile(q) - x_lower(q)| <= width / 2,     width = 2**level, about 2 * S / max_buckets at most

(a year of timestamps: width 2**44 ns, about 4.9 hours; a day: 2**36 ns, about 69 seconds).

Merging brings both sketches to the coarser level (key >> d composes exactly), adds counts, and doubles the
width while the span is too large. The result is the level the concatenated data would have chosen, so the
merged sketch equals the sketch of the whole, bucket for bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.encoding import int_in, pack_uints, unpack_uints
from loopml.stats.sketch import DEFAULT_MAX_BUCKETS, BucketStore

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MAX_LEVEL = 64


@dataclass(frozen=True)
class UniformSketch:
    """Absolute-error quantile sketch of int64 values; see the module docstring for the guarantee."""

    level: int = 0
    max_buckets: int = DEFAULT_MAX_BUCKETS
    store: BucketStore = field(default_factory=BucketStore)

    def __post_init__(self) -> None:
        if self.max_buckets < 2:
            raise InvalidInput(f"uniform sketch max_buckets must be at least 2, got {self.max_buckets}")
        if not 0 <= self.level <= MAX_LEVEL:
            raise InvalidInput(f"uniform sketch level must be in [0, {MAX_LEVEL}], got {self.level}")

    @classmethod
    def from_values(cls, values: IntArray, *, max_buckets: int = DEFAULT_MAX_BUCKETS) -> UniformSketch:
        """Sketch of int64 values (for datetimes: nanoseconds since the epoch, NaT removed)."""
        if values.size == 0:
            return cls(max_buckets=max_buckets)
        low, high = int(values.min()), int(values.max())
        level = 0
        while (high >> level) - (low >> level) + 1 > max_buckets:
            level += 1
        keys = np.right_shift(values, level)  # arithmetic shift: floor division by 2**level
        return cls(
            level, max_buckets, BucketStore(low >> level, tuple(np.bincount(keys - (low >> level)).tolist()))
        )

    @property
    def width(self) -> int:
        """Bucket width in units (nanoseconds for datetimes): 2**level."""
        return 1 << self.level

    @property
    def count(self) -> int:
        """Number of values sketched."""
        return self.store.total

    def merge(self, other: UniformSketch) -> UniformSketch:
        """The sketch of both inputs together (exact: equal to sketching the concatenated values)."""
        if other.max_buckets != self.max_buckets:
            raise InvalidInput(
                f"cannot merge uniform sketches with max_buckets {self.max_buckets} and {other.max_buckets}"
            )
        if not other.store.counts:
            return self
        if not self.store.counts:
            return other
        # Find the level first (from the end keys alone), so no array wider than max_buckets is ever allocated.
        level = max(self.level, other.level)
        while True:
            ends = [
                (
                    sketch.store.offset >> (level - sketch.level),
                    (sketch.store.offset + len(sketch.store.counts) - 1) >> (level - sketch.level),
                )
                for sketch in (self, other)
            ]
            low, high = min(e[0] for e in ends), max(e[1] for e in ends)
            if high - low + 1 <= self.max_buckets:
                break
            level += 1
        a, b = _coarsen(self.store, level - self.level), _coarsen(other.store, level - other.level)
        merged = np.zeros(high - low + 1, dtype=np.int64)
        merged[a.offset - low : a.offset - low + len(a.counts)] += a.array()
        merged[b.offset - low : b.offset - low + len(b.counts)] += b.array()
        store = BucketStore(low, tuple(merged.tolist()))
        return UniformSketch(level, self.max_buckets, store)

    def quantiles(self, qs: FloatArray) -> FloatArray:
        """Estimates of the values of rank floor(q * (n - 1)): bucket midpoints, within width/2; NaN when empty."""
        n = self.count
        if n == 0:
            return np.full(qs.shape, np.nan)
        keys = self.store.offset + np.arange(len(self.store.counts), dtype=np.float64)
        midpoints = keys * float(self.width) + (self.width - 1) / 2.0
        cumulative = np.cumsum(self.store.array())
        index = np.searchsorted(cumulative, np.floor(qs * (n - 1)), side="right")
        return np.asarray(midpoints[index], dtype=np.float64)

    def rank(self, points: FloatArray, *, inclusive: bool = False) -> FloatArray:
        """Estimated number of values below each point, interpolated linearly inside the bucket holding it.

        The error at a point is at most the count of that one bucket (values within one width of it).
        `inclusive` is accepted for symmetry with `QuantileSketch.rank` and changes nothing: no value has a
        point mass here.
        """
        del inclusive
        counts = self.store.array()
        if counts.size == 0:
            return np.zeros(np.shape(points))
        cumulative = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
        start = float(self.store.offset)
        # Position in bucket units from the first bucket's start, clipped so infinite points stay finite.
        position = np.clip(np.asarray(points, dtype=np.float64) / self.width - start, -1.0, counts.size + 1.0)
        whole = np.floor(position)
        index = np.clip(whole, 0, counts.size).astype(np.intp)
        held = np.where((whole >= 0) & (whole < counts.size), np.append(counts, 0)[index], 0)
        return cumulative[index] + (position - whole) * held

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (bucket counts packed)."""
        return {
            "type": "uniform",
            "level": self.level,
            "max_buckets": self.max_buckets,
            "offset": self.store.offset,
            "counts": pack_uints(self.store.counts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UniformSketch:
        """Inverse of `to_dict`."""
        offset = data["offset"]
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise InvalidInput(f"profile field 'offset' must be an integer, got {offset!r}")
        counts = unpack_uints(data["counts"], what="counts")
        max_buckets = int_in(data["max_buckets"], what="max_buckets")
        store = BucketStore.from_array(offset, counts, max_buckets)
        if store.counts != tuple(counts.tolist()):
            raise InvalidInput("profile field 'counts' is not a canonical bucket store; damaged")
        return cls(level=int_in(data["level"], what="level"), max_buckets=max_buckets, store=store)


def _coarsen(store: BucketStore, shift: int) -> BucketStore:
    """The store with keys shifted right by `shift` bits (buckets 2**shift times wider)."""
    if shift == 0 or not store.counts:
        return store
    keys = np.right_shift(store.offset + np.arange(len(store.counts), dtype=np.int64), shift)
    # Consecutive keys map onto consecutive coarse keys, so summing each run gives the dense coarse store.
    starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
    return BucketStore(int(keys[0]), tuple(np.add.reduceat(store.array(), starts).tolist()))
