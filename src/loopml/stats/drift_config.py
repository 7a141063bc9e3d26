"""Configuration of drift detection: per-column methods and thresholds, and the dataset-level verdict.

The objects follow the scikit-learn rule: the keyword arguments are stored exactly as given (no defaults are
resolved, nothing is transformed), checked once in `__post_init__`, and `to_dict()` / `from_dict()` give a
plain JSON form, so a monitor's configuration can be recorded beside its results and compared later.

`method="auto"` is resolved per column when the report runs (`ColumnDriftConfig.resolve`):

    kind         both samples >= small_sample rows      either sample smaller
    numeric      "wasserstein" (W / reference std)       "ks" (two-sample Kolmogorov-Smirnov p-value)
    categorical  "jensen_shannon" (natural log)          "chi2" (chi-square test of the 2 x k counts)

`threshold=None` means the method's default: 0.1 for "wasserstein" and "jensen_shannon", 0.25 for "psi" (the
alert level), 0.05 for the tests, which is compared with the p-value after the report's multiple-testing
correction (Benjamini-Hochberg by default). PSI is always computed beside the primary method and graded with
`psi_warn` / `psi_alert`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from loopml.core.errors import InvalidInput

Kind = Literal["numeric", "categorical"]
NUMERIC_METHODS = ("wasserstein", "psi", "ks")
CATEGORICAL_METHODS = ("jensen_shannon", "psi", "chi2")
TEST_METHODS = frozenset({"ks", "chi2"})
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "psi": 0.25,
    "ks": 0.05,
    "chi2": 0.05,
}
CORRECTIONS = ("bh", "bonferroni", "none")


@dataclass(frozen=True)
class ColumnDriftConfig:
    """How one column (or every column of a kind) is compared; see the module docstring for `auto`."""

    method: str = "auto"
    threshold: float | None = None
    small_sample: int = 1000
    psi_bins: int = 10
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        methods = {"auto", *NUMERIC_METHODS, *CATEGORICAL_METHODS}
        if self.method not in methods:
            raise InvalidInput(f"unknown drift method {self.method!r}; use one of {sorted(methods)}")
        if self.threshold is not None and not (_number(self.threshold) and self.threshold > 0):
            raise InvalidInput(f"a drift threshold must be a positive number, got {self.threshold!r}")
        if (
            isinstance(self.small_sample, bool)
            or not isinstance(self.small_sample, int)
            or self.small_sample < 0
        ):
            raise InvalidInput(f"small_sample must be a non-negative integer, got {self.small_sample!r}")
        if (
            isinstance(self.psi_bins, bool)
            or not isinstance(self.psi_bins, int)
            or not 2 <= self.psi_bins <= 1000
        ):
            raise InvalidInput(f"psi_bins must be an integer in [2, 1000], got {self.psi_bins!r}")
        if not (_number(self.psi_warn) and _number(self.psi_alert) and 0 < self.psi_warn <= self.psi_alert):
            raise InvalidInput(
                f"PSI levels must be numbers with 0 < psi_warn <= psi_alert, got {self.psi_warn!r}, "
                f"{self.psi_alert!r}"
            )
        if not (_number(self.epsilon) and 0 < self.epsilon < 0.01):
            raise InvalidInput(
                f"epsilon (the smoothing floor of a share) must be in (0, 0.01), got {self.epsilon!r}"
            )

    def resolve(self, kind: Kind, reference_rows: int, current_rows: int) -> tuple[str, float]:
        """(method, threshold) for a column of `kind` compared on samples of these sizes (non-null values)."""
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        method = self.method
        if method == "auto":
            small = min(reference_rows, current_rows) < self.small_sample
            method = allowed[2] if small else allowed[0]
        elif method not in allowed:
            raise InvalidInput(
                f"method {method!r} does not apply to a {kind} column; use one of {list(allowed)}"
            )
        threshold = DEFAULT_THRESHOLDS[method] if self.threshold is None else float(self.threshold)
        return method, threshold

    def to_dict(self) -> dict[str, Any]:
        """The arguments as given, JSON-able."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnDriftConfig:
        """Inverse of `to_dict`; unknown keys are refused."""
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class DriftConfig:
    """Per-kind defaults, per-column overrides and the dataset-level rule of a drift report.

    `columns` maps a column name to the `ColumnDriftConfig` used for it instead of the kind's default.
    The dataset drifts when the share of drifted columns (among those compared) is >= `drift_share`.
    `correction` adjusts the p-values of the columns decided by a test: "bh" (Benjamini-Hochberg false
    discovery rate), "bonferroni" or "none".
    """

    numeric: ColumnDriftConfig = field(default_factory=ColumnDriftConfig)
    categorical: ColumnDriftConfig = field(default_factory=ColumnDriftConfig)
    columns: Mapping[str, ColumnDriftConfig] = field(default_factory=dict)
    drift_share: float = 0.5
    correction: str = "bh"

    def __post_init__(self) -> None:
        for name, value in (("numeric", self.numeric), ("categorical", self.categorical)):
            if not isinstance(value, ColumnDriftConfig):
                raise InvalidInput(
                    f"DriftConfig.{name} must be a ColumnDriftConfig, got {type(value).__name__}"
                )
        if not isinstance(self.columns, Mapping) or not all(
            isinstance(k, str) and isinstance(v, ColumnDriftConfig) for k, v in self.columns.items()
        ):
            raise InvalidInput("DriftConfig.columns must map column names to ColumnDriftConfig objects")
        if not (_number(self.drift_share) and 0 < self.drift_share <= 1):
            raise InvalidInput(f"drift_share must be in (0, 1], got {self.drift_share!r}")
        if self.correction not in CORRECTIONS:
            raise InvalidInput(f"unknown correction {self.correction!r}; use one of {list(CORRECTIONS)}")

    def for_column(self, name: str, kind: Kind) -> ColumnDriftConfig:
        """The configuration that applies to column `name` of `kind`."""
        if name in self.columns:
            return self.columns[name]
        return self.numeric if kind == "numeric" else self.categorical

    def to_dict(self) -> dict[str, Any]:
        """The arguments as given, JSON-able."""
        return {
            "numeric": self.numeric.to_dict(),
            "categorical": self.categorical.to_dict(),
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
            "drift_share": self.drift_share,
            "correction": self.correction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftConfig:
        """Inverse of `to_dict`; unknown keys are refused."""
        known = _known(cls, data)
        for kind in ("numeric", "categorical"):
            if kind in known:
                known[kind] = ColumnDriftConfig.from_dict(known[kind])
        if "columns" in known:
            known["columns"] = {n: ColumnDriftConfig.from_dict(c) for n, c in known["columns"].items()}
        return cls(**known)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"a {cls.__name__} must be read from a mapping, got {type(data).__name__}")
    fields = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidInput(f"unknown {cls.__name__} settings {unknown}; known: {sorted(fields)}")
    return dict(data)
