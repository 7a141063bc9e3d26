"""`loopml monitor ...`: compute a served model's monitoring windows and look at them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loopml.cli.output import print_json, table, when

app = typer.Typer(
    help="Monitor served models: drift, data quality, latency per window.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
GranularityOption = Annotated[
    str | None,
    typer.Option("--granularity", "-g", help="minute | hour | day (default: the model's, else hour)"),
]


def granularity_of(model: str, given: str | None) -> str:
    """The window size asked for, else the one `[models.MODEL.monitoring]` sets (hour by default)."""
    if given is not None:
        return given
    from loopml.monitoring.config import monitor_config
    from loopml.tracking.tracker import default_tracker

    return monitor_config(default_tracker().settings.project_dir, model).granularity


@app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    granularity: GranularityOption = None,
    label_days: Annotated[
        float,
        typer.Option(min=0, help="Refresh the performance of windows this recent when labels came late"),
    ] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Compute every closed window of the model's prediction log not computed yet (idempotent), and the
    performance of recent windows whose labels arrived since; then exit."""
    from loopml.monitoring.config import monitor_config
    from loopml.monitoring.cycle import monitor_cycle
    from loopml.tracking.tracker import default_tracker

    tracker = default_tracker()
    config = monitor_config(tracker.settings.project_dir, model)
    cycle = monitor_cycle(
        tracker,
        model,
        granularity=granularity or config.granularity,
        label_days=label_days,
        grace_ms=config.grace_ms,
    )
    computed, refreshed, fired = cycle.computed, cycle.refreshed, cycle.alerts
    if json_output:
        print_json(computed)
        return
    for raised in fired:
        typer.echo(f"ALERT {raised.severity}: {raised.message}", err=True)
    _table(
        f"{model}: {len(computed)} window(s) computed, {len(refreshed)} updated with late labels", computed
    )


@app.command("windows")
def windows(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, help="Only this version")] = None,
    granularity: GranularityOption = None,
    json_output: JsonOption = False,
) -> None:
    """The computed windows of a model, oldest first."""
    from loopml.monitoring.store import MonitorStore
    from loopml.tracking.tracker import default_tracker

    found = MonitorStore(default_tracker().stores.db).windows(
        model, version=version, granularity=granularity_of(model, granularity)
    )
    if json_output:
        print_json(found)
        return
    _table(f"Monitoring windows of {model}", found)


@app.command("check")
def check(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@vN")],
    current: Annotated[str, typer.Option("--current", "-c", help="CSV or Parquet file to measure")],
    html: Annotated[
        str | None, typer.Option("--html", help="Also write the drift report as HTML here")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Drift and data quality of a file against a model version's reference; exit 1 when the data drifted."""
    from loopml.monitoring.checking import check as check_file
    from loopml.tracking.tracker import default_tracker

    result = check_file(default_tracker(), ref, current)
    if html:
        result.drift.to_html(html)
    if json_output:
        print_json(result.to_dict())
    else:
        typer.echo(repr(result.drift))
        typer.echo(f"quality: {_quality(result.quality)}")
    if result.drift.drifted:
        raise typer.Exit(1)


@app.command("labels")
def labels(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    path: Annotated[str, typer.Argument(help="CSV or Parquet file of prediction ids and true labels")],
    id_column: Annotated[str, typer.Option(help="Column holding the prediction id")] = "prediction_id",
    label_column: Annotated[str, typer.Option(help="Column holding the true label")] = "label",
    json_output: JsonOption = False,
) -> None:
    """Record late labels for logged predictions; ids the prediction log does not hold are counted, not kept."""
    from loopml.monitoring.labels import ingest_labels
    from loopml.tracking.tracker import default_tracker

    result = ingest_labels(default_tracker(), model, path, id_column=id_column, label_column=label_column)
    if json_output:
        print_json(result)
        return
    typer.echo(f"{result.recorded} of {result.rows} labels recorded for {model}")
    if result.unknown_ids:
        shown = ", ".join(result.unknown_examples)
        typer.echo(f"{result.unknown_ids} ids are not in the prediction log (e.g. {shown})", err=True)


def _table(title: str, records: list[Any]) -> None:
    rows = [
        (
            when(r.start_ms),
            f"v{r.version}",
            r.rows,
            _drifted(r.drift),
            _quality(r.quality),
            _latency(r.quality),
            _errors(r.quality),
        )
        for r in records
    ]
    columns = ["window", "version", "rows", "drifted columns", "quality", "latency p50/p99 ms", "failed"]
    table(title, columns, rows)


def _drifted(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "-"
    names = [name for name, result in (drift.get("columns") or {}).items() if result.get("drifted")]
    return ", ".join(names) or "none"


def _quality(quality: dict[str, Any]) -> str:
    problems = [f"missing {c}" for c in quality.get("missing_columns", [])]
    for name, found in (quality.get("columns") or {}).items():
        if found.get("null_share") and not found.get("nulls_in_training"):
            problems.append(f"{name} nulls {found['null_share']:.0%}")
        if found.get("out_of_range"):
            problems.append(f"{name} out of range {found['out_of_range_share']:.0%}")
        if found.get("unseen_levels"):
            problems.append(f"{name} unseen {found['unseen_share']:.0%}")
    return "; ".join(problems) or "ok"


def _latency(quality: dict[str, Any]) -> str:
    latency = quality.get("latency_ms")
    return "-" if not latency else f"{latency['p50']:.2f} / {latency['p99']:.2f}"


def _errors(quality: dict[str, Any]) -> str:
    counted = quality.get("requests")
    return "-" if not counted else f"{counted['failed']:,} of {counted['requests']:,}"


# The sub-commands of their own modules register themselves on `app` when imported.
from loopml.cli import monitor_alerts, monitor_report  # noqa: E402, F401
