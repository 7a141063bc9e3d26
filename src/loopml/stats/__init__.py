"""Mergeable, small, JSON-able profiles of tabular data: the math layer (numpy only, no I/O).

A profile is computed once per dataset version and serves later as the drift reference, so every piece is
mergeable (the profile of two chunks merges into the profile of the whole), small (a few KB per column, not
proportional to rows) and a plain JSON-able dict with a version.

```
TableProfile                       profile.py     rows, {name: ColumnProfile}, {name: LogicalType}
├── NumericProfile                 numeric.py     numeric and datetime columns: counts, min/max, mean, m2
│   ├── QuantileSketch             sketch.py      numbers: DDSketch buckets, quantiles within 1% relative
│   ├── UniformSketch              uniform.py     datetimes: equal-width buckets, quantiles within ~span/2048
│   └── HyperLogLog                hll.py         distinct count, 1.6% standard error
├── CategoricalProfile             categorical.py categorical and boolean columns: exact top-1000 counts + HLL
└── TextProfile                    text.py        free text: counts, length profile, HLL; no values kept
encoding.py                                       packing of bucket counts and registers in JSON
nulls.py                                          what counts as missing in object columns (None, NaN, NA, NaT)
```
Entry points: `profile_columns({name: array})`, `merge(a, b, ...)`, `TableProfile.to_dict()` / `from_dict()`.
"""

from loopml.stats.categorical import CategoricalProfile
from loopml.stats.hll import HyperLogLog
from loopml.stats.numeric import NumericProfile
from loopml.stats.profile import (
    FORMAT_VERSION,
    ColumnProfile,
    LogicalType,
    TableProfile,
    merge,
    profile_column,
    profile_columns,
)
from loopml.stats.sketch import QuantileSketch
from loopml.stats.text import TextProfile
from loopml.stats.uniform import UniformSketch

__all__ = [
    "FORMAT_VERSION",
    "CategoricalProfile",
    "ColumnProfile",
    "HyperLogLog",
    "LogicalType",
    "NumericProfile",
    "QuantileSketch",
    "TableProfile",
    "TextProfile",
    "UniformSketch",
    "merge",
    "profile_column",
    "profile_columns",
]
