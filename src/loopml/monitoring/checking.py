"""`check(tracker, "fraud@champion", frame)`: drift and data quality of a batch (a file, a DataFrame) against a
model version's reference, without serving it: `loopml monitor check MODEL --current data.parquet`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput
from loopml.monitoring.config import monitor_config
from loopml.monitoring.drift import DriftReport, drift_report
from loopml.monitoring.quality import window_quality
from loopml.monitoring.reference import reference_for
from loopml.predictions.records import INPUT_PREFIX
from loopml.registry.signature import Signature
from loopml.registry.store import RegistryStore

if TYPE_CHECKING:
    import pandas as pd

    from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class CheckResult:
    """A batch measured against a model version: its drift report and its quality findings."""

    model: str
    version: int
    rows: int
    drift: DriftReport
    quality: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "drift": self.drift.to_dict(),
            "quality": self.quality,
        }


def check(tracker: Tracker, ref: str, current: pd.DataFrame | str | Path) -> CheckResult:
    """Drift and quality of `current` (a DataFrame, or a CSV/Parquet path) against the reference of `ref`."""
    version = RegistryStore(tracker.stores.db).get_version(ref)
    config = monitor_config(tracker.settings.project_dir, version.name)
    reference = reference_for(tracker, version, config.reference)
    if reference is None:
        raise InvalidInput(
            f"{version.ref} has no reference profile (it was registered without a sample); register it with "
            "sample=X_train to monitor it"
        )
    frame = read_table(current)
    signature = Signature.from_dict(version.signature) if version.signature else None
    shared = [name for name in reference.columns if name in frame.columns]
    report = drift_report(reference=reference, current=frame[shared], config=config.drift)
    quality = window_quality(frame.add_prefix(INPUT_PREFIX), signature)
    return CheckResult(version.name, version.version, len(frame), report, quality)


def read_table(source: pd.DataFrame | str | Path, *, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A DataFrame, or the table in a CSV or Parquet file (`text_columns` read from CSV as text, so ids such
    as "007" keep their zeros); `InvalidInput` saying what is wrong."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"no file {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    except (ValueError, OSError) as error:
        raise InvalidInput(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    raise InvalidInput(
        f"the current data comes as .csv or .parquet, not {suffix or 'a file without extension'}"
    )
