"""Profile of a categorical (or boolean) column: exact counts of the most frequent values and a distinct count.

Categories are strings: str values as they are, bytes decoded as UTF-8, anything else as `str(value)`
(booleans become "True" and "False"). Null is None, a float NaN, NaT, or pandas' NA/NaT.

Up to `max_categories` (1000) distinct values every count is exact, and merging is exact. Beyond the cap a
profile keeps the most frequent values (ties broken by value) and sums the rest into `other`. Merging capped
profiles is then approximate in the tail: a value dropped from one chunk and kept in another is undercounted.
The bound after any merges: for every kept value, `counts[v] <= true count <= counts[v] + other`, and every
value not kept has a true count of at most `other`. `count`, `nulls` and `count = sum(counts) + other` stay
exact.

`distinct()` is exact while nothing was dropped (`other == 0`), else the HyperLogLog estimate over every value
ever seen (relative standard error 1.6%), which is independent of the cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.encoding import int_in
from loopml.stats.hll import DEFAULT_P, HyperLogLog, hash_strings
from loopml.stats.nulls import is_null

DEFAULT_MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class CategoricalProfile:
    """Mergeable summary of a categorical column; build with `from_array` or `from_counts`."""

    count: int = 0
    nulls: int = 0
    top: tuple[tuple[str, int], ...] = ()  # (value, count), most frequent first, then by value
    other: int = 0
    max_categories: int = DEFAULT_MAX_CATEGORIES
    hll: HyperLogLog = field(default_factory=HyperLogLog)

    def __post_init__(self) -> None:
        if self.max_categories < 1:
            raise InvalidInput(f"max_categories must be at least 1, got {self.max_categories}")

    @classmethod
    def from_array(
        cls, values: npt.ArrayLike, *, max_categories: int = DEFAULT_MAX_CATEGORIES, p: int = DEFAULT_P
    ) -> CategoricalProfile:
        """Profile a 1-D array of any dtype; each distinct value becomes a category (see the module docstring)."""
        counts, nulls = count_values(np.asarray(values))
        return cls.from_counts(counts, nulls=nulls, max_categories=max_categories, p=p)

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        nulls: int = 0,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        p: int = DEFAULT_P,
    ) -> CategoricalProfile:
        """Profile from exact value counts (e.g. from `count_values`); the HLL sees every value, kept or not."""
        hll = HyperLogLog.from_hashes(hash_strings(counts), p=p)
        return cls._capped(counts, nulls=nulls, other=0, max_categories=max_categories, hll=hll)

    @classmethod
    def _capped(
        cls, counts: Mapping[str, int], *, nulls: int, other: int, max_categories: int, hll: HyperLogLog
    ) -> CategoricalProfile:
        ordered = sorted(((v, c) for v, c in counts.items() if c > 0), key=lambda item: (-item[1], item[0]))
        kept = ordered[:max_categories]
        other += sum(c for _, c in ordered[max_categories:])
        total = sum(c for _, c in kept) + other
        return cls(
            count=total, nulls=nulls, top=tuple(kept), other=other, max_categories=max_categories, hll=hll
        )

    @property
    def counts(self) -> dict[str, int]:
        """The kept values and their counts, most frequent first."""
        return dict(self.top)

    @property
    def truncated(self) -> bool:
        """True when some values were dropped into `other` (their counts are then bounded, not exact)."""
        return self.other > 0

    def frequencies(self) -> dict[str, float]:
        """Share of non-null values per kept category (the rest, `other / count`, is the tail)."""
        return {value: c / self.count for value, c in self.top} if self.count else {}

    def distinct(self) -> float:
        """Number of distinct non-null values: exact unless truncated, else the HyperLogLog estimate."""
        if not self.truncated:
            return float(len(self.top))
        return max(self.hll.estimate(), float(len(self.top)) + 1.0)

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        """The profile of both chunks together; exact unless the union of kept values exceeds the cap."""
        if other.max_categories != self.max_categories:
            raise InvalidInput(
                f"cannot merge categorical profiles with max_categories {self.max_categories} and "
                f"{other.max_categories}; profile both with the same setting"
            )
        counts: Counter[str] = Counter(dict(self.top))
        counts.update(dict(other.top))
        return CategoricalProfile._capped(
            counts,
            nulls=self.nulls + other.nulls,
            other=self.other + other.other,
            max_categories=self.max_categories,
            hll=self.hll.merge(other.hll),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form: categories as [value, count] pairs, most frequent first."""
        return {
            "count": self.count,
            "nulls": self.nulls,
            "top": [[value, c] for value, c in self.top],
            "other": self.other,
            "max_categories": self.max_categories,
            "hll": self.hll.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        """Inverse of `to_dict`."""
        top = []
        for pair in data["top"]:
            if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                raise InvalidInput(f"profile field 'top' must hold [value, count] pairs, got {pair!r}")
            top.append((pair[0], int_in(pair[1], what="top")))
        profile = cls(
            count=int_in(data["count"], what="count"),
            nulls=int_in(data["nulls"], what="nulls"),
            top=tuple(top),
            other=int_in(data["other"], what="other"),
            max_categories=int_in(data["max_categories"], what="max_categories"),
            hll=HyperLogLog.from_dict(data["hll"]),
        )
        if profile.count != sum(c for _, c in top) + profile.other or len(top) > profile.max_categories:
            raise InvalidInput("categorical profile is inconsistent (count, top and other disagree); damaged")
        return profile


def count_values(values: npt.NDArray[Any]) -> tuple[dict[str, int], int]:
    """(exact count per distinct non-null value as a string, number of nulls) of a 1-D array.

    Vectorised for numeric, boolean and datetime dtypes (np.unique); str, bytes and object arrays are counted
    by `collections.Counter`, whose loop runs in C, then only the distinct values are looked at in Python.
    Counter groups values Python finds equal, so in one object column 1, 1.0 and True are one category, named
    after the first seen; values whose string forms coincide (1 and "1") are added up.
    """
    if values.ndim != 1:
        raise InvalidInput(f"a column must be a 1-D array, got {values.ndim} dimensions")
    kind = values.dtype.kind
    if kind == "b":
        true = int(np.count_nonzero(values))
        return {name: c for name, c in (("True", true), ("False", values.size - true)) if c}, 0
    if kind in "iufmM":
        present = ~np.isnat(values) if kind in "mM" else ~np.isnan(values) if kind == "f" else None
        kept = values if present is None or present.all() else values[present]
        unique, counts = np.unique(kept, return_counts=True)
        names = [str(v) for v in unique.tolist()] if kind not in "mM" else [str(v) for v in unique]
        return _add_up(zip(names, counts.tolist(), strict=True)), int(values.size - kept.size)
    if kind in "OUST":
        try:
            raw = Counter(values.tolist())
        except TypeError:
            raise InvalidInput(
                "cannot profile this column as categorical: it holds unhashable values (lists, dicts, arrays)"
            ) from None
        nulls = sum(c for v, c in raw.items() if is_null(v))
        return _add_up((_name(v), c) for v, c in raw.items() if not is_null(v)), nulls
    raise InvalidInput(f"cannot profile a column of dtype {values.dtype} as categorical")


def _add_up(pairs: Any) -> dict[str, int]:
    """Sum counts of values whose string forms coincide (1 and "1")."""
    counts: dict[str, int] = {}
    for name, c in pairs:
        counts[name] = counts.get(name, 0) + int(c)
    return counts


def _name(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
