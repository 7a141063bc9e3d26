"""Profile of a free-text column: counts, string-length statistics and a distinct count; no values are kept.

Text is what a categorical profile cannot summarise: most values are unique, so keeping the top values would
keep noise (and personal data). The length profile is a full `NumericProfile` over the lengths in characters
(exact counts and moments, quantiles within 1%), and `distinct()` is a HyperLogLog estimate (1.6%). Everything
merges exactly except what those sketches estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.core.errors import InvalidInput
from loopml.stats.categorical import count_values
from loopml.stats.encoding import int_in
from loopml.stats.hll import DEFAULT_P, HyperLogLog, hash_strings
from loopml.stats.numeric import NumericProfile


@dataclass(frozen=True)
class TextProfile:
    """Mergeable summary of a text column; build with `from_array` or `from_counts`."""

    count: int = 0
    nulls: int = 0
    length: NumericProfile = field(default_factory=NumericProfile)
    hll: HyperLogLog = field(default_factory=HyperLogLog)

    @classmethod
    def from_array(cls, values: npt.ArrayLike, *, p: int = DEFAULT_P) -> TextProfile:
        """Profile a 1-D array of strings (str, bytes or object dtype; None and NaN are null)."""
        counts, nulls = count_values(np.asarray(values))
        return cls.from_counts(counts, nulls=nulls, p=p)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, nulls: int = 0, p: int = DEFAULT_P) -> TextProfile:
        """Profile from exact value counts (as `count_values` returns them)."""
        lengths = np.fromiter(map(len, counts), dtype=np.int64, count=len(counts))
        repeats = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
        return cls(
            count=int(repeats.sum()),
            nulls=nulls,
            length=NumericProfile.from_array(np.repeat(lengths, repeats)),
            hll=HyperLogLog.from_hashes(hash_strings(counts), p=p),
        )

    def distinct(self) -> float:
        """Estimated number of distinct non-null values (HyperLogLog; relative standard error 1.6%)."""
        return self.hll.estimate()

    def merge(self, other: TextProfile) -> TextProfile:
        """The profile of both chunks together."""
        return TextProfile(
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            length=self.length.merge(other.length),
            hll=self.hll.merge(other.hll),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "count": self.count,
            "nulls": self.nulls,
            "length": self.length.to_dict(),
            "hll": self.hll.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextProfile:
        """Inverse of `to_dict`."""
        profile = cls(
            count=int_in(data["count"], what="count"),
            nulls=int_in(data["nulls"], what="nulls"),
            length=NumericProfile.from_dict(data["length"]),
            hll=HyperLogLog.from_dict(data["hll"]),
        )
        if profile.length.count != profile.count:
            raise InvalidInput("text profile is inconsistent (count and length count disagree); damaged")
        return profile
