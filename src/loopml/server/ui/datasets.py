"""Datasets: every dataset with its newest version; one dataset's versions (who added each, rows, columns,
digest, the runs that read it) with a form to compare two; one version's schema and per-column profile
charts (histograms of numbers, dates and text lengths, top values of categories), its files and its
lineage (runs that read it, model versions trained on it); and the diff of two versions (rows, schema,
files, per-column statistics, reference and current distributions overlaid).

Dataset names may hold `/`, so one route reads the rest of the path: `NAME`, `NAME/vN` (or `NAME/latest`)
and `NAME/diff?old=vA&new=vB`. When a name ending in `/vN` or `/diff` could also be a dataset of its own,
the shorter dataset's version (or diff) wins.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.data.catalog import DataCatalog
from loopml.data.records import Dataset, DatasetVersion, VersionRef
from loopml.data.store import DatasetStore
from loopml.registry.store import RegistryStore
from loopml.server.ui import charts
from loopml.server.ui.pages import Pages, caller, link, num, when
from loopml.stats import (
    CategoricalProfile,
    ColumnProfile,
    LogicalType,
    NumericProfile,
    TableProfile,
    TextProfile,
)
from loopml.tracking.attachments import InputReader, RunAttachments

MAX_CHARTS = 40  # columns charted on a version or diff page, in schema order; the rest are listed
MAX_VERSIONS = 200  # newest versions listed on a dataset's page
MAX_FILES = 500  # files listed per version, and per kind of change on a diff page
MAX_READERS = 200  # runs listed as readers of one version
READERS_PER_VERSION = 5  # on a dataset's page, per version
MAX_LINEAGE_RUNS = 500  # reader runs whose registered model versions are looked up
MAX_STAT_ROWS = 200  # columns in a diff's statistics table
BINS = 10  # histogram bars: a few readable labels on a 420 px chart beat fine detail
MAX_WHOLE_BARS = 16  # whole-number columns spanning fewer values get one bar per value
TOP_VALUES = 10  # categories charted per column (the rest as one "other" bar)
VERSION = re.compile(r"v?(\d{1,12})")  # "v2", or a bare "2" as some records write it


@dataclass(frozen=True)
class Reads:
    """The stores the pages read: version records and files, run inputs, registered model versions."""

    catalog: DataCatalog
    records: DatasetStore
    attachments: RunAttachments
    registry: RegistryStore


def routes(app: FastAPI, pages: Pages) -> None:
    db = pages.tracker.stores.db
    reads = Reads(
        DataCatalog(pages.tracker.stores),
        DatasetStore(db),
        pages.tracker.store.attachments,
        RegistryStore(db),
    )

    @app.get("/datasets", response_class=HTMLResponse)
    def dataset_list(request: Request) -> HTMLResponse:
        caller(request)
        return _render(pages, request, "datasets.html", rows=_newest_first(reads))

    @app.get("/datasets/{path:path}", response_class=HTMLResponse)
    def dataset_pages(request: Request, path: str, old: str = "", new: str = "") -> HTMLResponse:
        caller(request)
        if not path:  # `/datasets/`
            return dataset_list(request)
        page, name, number = _resolve(path, {d.name for d in reads.catalog.datasets()})
        if page == "diff":
            return _render(pages, request, "dataset_diff.html", **_diff(reads.catalog, name, old, new))
        if page == "version":
            version = reads.catalog.get(VersionRef(name, number))
            return _render(pages, request, "dataset_version.html", **_version_page(reads, request, version))
        return _render(pages, request, "dataset.html", **_dataset_page(reads, name))


def _render(pages: Pages, request: Request, template: str, **context: Any) -> HTMLResponse:
    return pages.render(
        request,
        template,
        section="datasets",
        href=lambda name, *parts, **query: dataset_link(request, name, *parts, **query),
        human_size=human_size,
        **context,
    )


def dataset_link(request: Request, name: str, *parts: str | int, **query: Any) -> str:
    """The page of a dataset (`parts`: a version, or "diff"); names may hold spaces and `/`."""
    path = "/".join([quote(name, safe="/"), *(quote(str(p), safe="") for p in parts)])
    return link(request, f"/datasets/{path}", **query)


def _resolve(path: str, names: set[str]) -> tuple[str, str, int | None]:
    """(page, dataset, version number) for the path after `/datasets/`: "dataset", "version" or "diff"."""
    head, _, last = path.rpartition("/")
    if head in names and last == "diff":
        return "diff", head, None
    if head in names and last == "latest":
        return "version", head, None
    matched = VERSION.fullmatch(last)
    if head in names and matched:
        number = int(matched.group(1))
        if not 1 <= number < 10**9:
            raise NotFound(f"dataset {head!r} has no version {last}")
        return "version", head, number
    if path not in names:
        raise NotFound(f"no dataset named {path!r}")
    return "dataset", path, None


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable: the loop returns at TB


# -- every dataset, and one dataset's versions ---------------------------------------------------------


def _newest_first(reads: Reads) -> list[tuple[Dataset, DatasetVersion | None]]:
    """Each dataset with its newest version, the most recently changed first."""
    newest = reads.records.newest_versions()
    rows = [(d, newest.get(d.name)) for d in reads.catalog.datasets()]
    rows.sort(key=lambda row: row[1].created_time if row[1] else row[0].created_time, reverse=True)
    return rows


def _dataset_page(reads: Reads, name: str) -> dict[str, Any]:
    versions = reads.catalog.versions(name)
    return {
        "name": name,
        "versions": versions[:MAX_VERSIONS],
        "total": len(versions),
        "readers": _by_version(reads.attachments.input_readers(name)),
        "per_version": READERS_PER_VERSION,
        "rows_chart": _rows_chart(versions),
    }


def _by_version(readers: Iterable[InputReader]) -> dict[str, list[InputReader]]:
    grouped: dict[str, list[InputReader]] = {}
    for reader in readers:
        grouped.setdefault(reader.version, []).append(reader)
    return grouped


def _rows_chart(versions: Sequence[DatasetVersion]) -> dict[str, Any] | None:
    """Row count per version, oldest first, when at least two versions are tables."""
    tables = [v for v in reversed(versions) if v.row_count is not None]
    if len(tables) < 2:
        return None
    return charts.xy(
        [v.version for v in tables],
        [("rows", [float(v.row_count or 0) for v in tables])],
        x_label="version",
        y_label="rows",
        whole_x=True,
    )


# -- one version -------------------------------------------------------------------------------------


@dataclass
class Column:
    """A schema column with what its profile says about it."""

    name: str
    type: str
    logical: str
    nullable: bool
    stats: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] | None = None
    note: str = ""  # why a column has no chart


def _version_page(reads: Reads, request: Request, version: DatasetVersion) -> dict[str, Any]:
    profile, problem = _profile(reads.catalog, version)
    columns = [_column(c, profile) for c in version.schema or []]
    for column in columns[:MAX_CHARTS]:
        _chart_column(column, profile)
    entries = reads.catalog.tree(version).entries
    readers = reads.attachments.input_readers(version.name, f"v{version.version}")
    run_ids = list(dict.fromkeys(r.run_id for r in readers))[:MAX_LINEAGE_RUNS]
    return {
        "readers": readers[:MAX_READERS],
        "more_readers": max(0, len(readers) - MAX_READERS),
        "models": reads.registry.versions_from_runs(run_ids),
        "model_href": lambda m: link(request, f"/models/{quote(m.name, safe='')}/v{m.version}"),
        "version": version,
        "facts": _facts(version),
        "columns": columns,
        "charted": [c for c in columns[:MAX_CHARTS] if c.chart is not None],
        "uncharted": [c for c in columns[:MAX_CHARTS] if c.chart is None],
        "hidden": [c.name for c in columns[MAX_CHARTS:]],
        "max_charts": MAX_CHARTS,
        "problem": problem,
        "files": entries[:MAX_FILES],
        "file_total": len(entries),
    }


def _facts(version: DatasetVersion) -> list[tuple[str, str]]:
    """What the version is, leaving out what does not apply (rows and columns of a folder, a local author)."""
    facts = [
        ("reference", version.ref),
        ("kind", version.kind),
        ("digest", version.digest),
        ("size", f"{human_size(version.size)} ({num(version.size)} bytes)"),
        ("files", num(version.file_count)),
        ("rows", num(version.row_count)),
        ("columns", num(len(version.schema)) if version.schema is not None else ""),
        ("created", when(version.created_time)),
        ("author", version.user or "local"),
        ("source", version.source or ""),
        ("git commit", version.git_commit or ""),
    ]
    return [(key, value) for key, value in facts if value]


def _profile(catalog: DataCatalog, version: DatasetVersion) -> tuple[TableProfile | None, str]:
    """The version's profile, or why it cannot be read (the page still shows the rest)."""
    try:
        stored = catalog.profile(version)
        return (TableProfile.from_dict(stored) if stored is not None else None), ""
    except LoopMLError as error:
        return None, f"the stored profile of {version.ref} cannot be read: {error.message}"


def _column(schema: dict[str, Any], profile: TableProfile | None) -> Column:
    column = Column(
        name=str(schema.get("name", "")),
        type=str(schema.get("type", "")),
        logical=str(schema.get("logical", "")),
        nullable=bool(schema.get("nullable")),
    )
    if profile is not None and column.name in profile.columns:
        column.stats = _stats(profile.columns[column.name], profile.kinds[column.name])
    return column


def _stats(found: ColumnProfile, kind: LogicalType) -> dict[str, Any]:
    """The schema table's numbers for one column (datetimes shown as dates, not nanoseconds)."""
    stats: dict[str, Any] = {"nulls": found.nulls, "distinct": round(found.distinct())}
    if isinstance(found, NumericProfile) and found.count:
        show: Callable[[float | None], Any] = _instant if kind is LogicalType.DATETIME else _plain
        stats.update(min=show(found.min), max=show(found.max), mean=show(found.mean))
        if kind is not LogicalType.DATETIME:
            stats["std"] = found.std
        if found.infinities:
            stats["infinite"] = found.infinities
    elif isinstance(found, CategoricalProfile) and found.top:
        stats["top"] = found.top[0][0]
    elif isinstance(found, TextProfile) and found.count:
        stats["mean"] = f"{found.length.mean:.1f} chars"
    return stats


def _chart_column(column: Column, profile: TableProfile | None) -> None:
    if profile is None or column.name not in profile.columns:
        column.note = "no profile"
        return
    found, kind = profile.columns[column.name], profile.kinds[column.name]
    if isinstance(found, CategoricalProfile):
        labels, counts = _top_values([found])
        column.chart = charts.bars(labels, [("rows", counts[0])], x_label="value", y_label="rows")
    else:
        numbers = found.length if isinstance(found, TextProfile) else found
        if not numbers.count:
            column.note = "no values"
            return
        integral = isinstance(found, TextProfile) or _integral(column.type)
        labels, counts = _histogram([numbers], kind, integral=integral)
        x_label = "length (chars)" if isinstance(found, TextProfile) else "value"
        column.chart = charts.bars(labels, [("rows", counts[0])], x_label=x_label, y_label="rows")


# -- histograms and top values of one or two profiles (reference and current share their bins) ---------


def _histogram(
    sides: Sequence[NumericProfile], kind: LogicalType, *, integral: bool = False
) -> tuple[list[str], list[list[float]]]:
    """Counts per side over shared equal-width bins from the smallest minimum to the largest maximum; a few
    whole numbers (codes, counts, lengths) get one bar each rather than bins that fall between them."""
    low = min(s.min for s in sides if s.min is not None)
    high = max(s.max for s in sides if s.max is not None)
    label = _date_label(high - low) if kind is LogicalType.DATETIME else _number
    if low == high:  # a constant: one bar
        return [label(low)], [[float(s.count)] for s in sides]
    if integral and high - low < MAX_WHOLE_BARS:
        edges = [low - 0.5 + i for i in range(int(high - low) + 2)]
        labels = [label(low + i) for i in range(len(edges) - 1)]
    else:
        width = (high - low) / BINS
        edges = [low + i * width for i in range(BINS)] + [high]
        labels = [label(low + (i + 0.5) * width) for i in range(BINS)]
    bars = len(labels)
    return labels, [[float(c) for c in s.histogram(edges)] if s.count else [0.0] * bars for s in sides]


def _integral(arrow_type: str) -> bool:
    return arrow_type.startswith(("int", "uint"))


def _top_values(sides: Sequence[CategoricalProfile]) -> tuple[list[str], list[list[float]]]:
    """Counts per side of the most frequent values of all sides (by their largest share), then "other"."""
    share: dict[str, float] = {}
    for side in sides:
        for value, count in side.top:
            share[value] = max(share.get(value, 0.0), count / side.count if side.count else 0.0)
    kept = sorted(share, key=lambda v: (-share[v], v))[:TOP_VALUES]
    counts = [[float(side.counts.get(v, 0)) for v in kept] for side in sides]
    rest = [float(side.count) - sum(c) for side, c in zip(sides, counts, strict=True)]
    labels = [_short(v) for v in kept]
    if any(r > 0 for r in rest):
        labels.append("(other)")
        counts = [[*c, r] for c, r in zip(counts, rest, strict=True)]
    return labels, counts


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _short(value: str, width: int = 16) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _number(value: float) -> str:
    """A bin's label, at most ~6 characters so ten of them fit under a chart."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.1e}" if 0 < magnitude < 1e-3 else f"{value:.3g}"


def _date_label(span_ns: float) -> Callable[[float], str]:
    """Short labels for date bins: as precise as the span needs (the schema table has the exact range)."""
    day = 86_400e9
    pattern = "%Y-%m" if span_ns > 400 * day else "%b %d" if span_ns > 2 * day else "%H:%M"
    return lambda ns: dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime(pattern)


def _plain(value: float | None) -> float | None:
    return value


def _instant(nanoseconds: float | None) -> str | None:
    """A datetime profile value (nanoseconds since the epoch) as UTC text, to the minute."""
    if nanoseconds is None or not math.isfinite(nanoseconds):
        return None
    moment = dt.datetime.fromtimestamp(nanoseconds / 1e9, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


# -- the diff of two versions ------------------------------------------------------------------------


@dataclass
class Shift:
    """A column in both versions: its statistics that changed and both distributions on shared bins."""

    name: str
    changes: dict[str, tuple[Any, Any]]
    chart: dict[str, Any] | None = None


def _diff(catalog: DataCatalog, name: str, old: str, new: str) -> dict[str, Any]:
    old_version = catalog.get(VersionRef(name, _version_number(old, "old")))
    new_version = catalog.get(VersionRef(name, _version_number(new, "new")))
    change = catalog.diff(old_version.ref, new_version.ref)
    before, problem_a = _profile(catalog, old_version)
    after, problem_b = _profile(catalog, new_version)
    old_types = {c["name"]: c["type"] for c in old_version.schema or []}
    both = [c for c in new_version.schema or [] if c["name"] in old_types]
    shifts = [Shift(c["name"], change.statistics.get(c["name"], {})) for c in both]
    if before is not None and after is not None:
        for shift, column in zip(shifts[:MAX_CHARTS], both, strict=False):
            whole = _integral(old_types[column["name"]]) and _integral(column["type"])
            shift.chart = _overlay(shift.name, (before, after), (old_version, new_version), integral=whole)
    old_rows, new_rows = change.rows
    return {
        "name": name,
        "old": old_version,
        "new": new_version,
        "change": change,
        "row_change": None if old_rows is None or new_rows is None else new_rows - old_rows,
        "shifts": [s for s in shifts if s.changes][:MAX_STAT_ROWS],
        "charted": [s for s in shifts[:MAX_CHARTS] if s.chart is not None],
        "hidden": [s.name for s in shifts[MAX_CHARTS:]],
        "max_charts": MAX_CHARTS,
        "max_files": MAX_FILES,
        "problem": problem_a or problem_b,
    }


def _version_number(text: str, what: str) -> int:
    matched = VERSION.fullmatch(text.strip()) or re.fullmatch(r"(\d{1,12})", text.strip())
    if matched is None:
        raise InvalidInput(f"{what} must be a version such as v3, got {text[:40]!r}")
    number = int(matched.group(1))
    if not 1 <= number < 10**9:
        raise InvalidInput(f"{what} must be a version from v1 up, got {text[:40]!r}")
    return number


def _overlay(
    column: str,
    profiles: tuple[TableProfile, TableProfile],
    versions: tuple[DatasetVersion, DatasetVersion],
    *,
    integral: bool,
) -> dict[str, Any] | None:
    """Both versions' distributions of a column as shares of its values, on the same bins or categories."""
    before, after = profiles
    if (
        column not in before.columns or column not in after.columns
    ):  # a profile that disagrees with its schema
        return None
    a, b = before.columns[column], after.columns[column]
    kind = after.kinds[column]
    if isinstance(a, CategoricalProfile) and isinstance(b, CategoricalProfile):
        labels, counts = _top_values([a, b])
        x_label = "value"
    elif isinstance(a, NumericProfile | TextProfile) and isinstance(b, NumericProfile | TextProfile):
        sides = [s.length if isinstance(s, TextProfile) else s for s in (a, b)]
        if not any(s.count for s in sides) or before.kinds[column] is not kind:
            return None
        labels, counts = _histogram(sides, kind, integral=integral or kind is LogicalType.TEXT)
        x_label = "length (chars)" if kind is LogicalType.TEXT else "value"
    else:  # the column changed between numbers and categories: no shared axis
        return None
    series = [(f"v{v.version}", _shares(c)) for v, c in zip(versions, counts, strict=True)]
    return charts.bars(labels, series, x_label=x_label, y_label="share of values")
