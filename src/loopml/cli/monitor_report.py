"""`loopml monitor report MODEL -o report.html`: the monitoring report as one self-contained HTML page (and JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli.monitor import GranularityOption, app, granularity_of


@app.command("report")
def report(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report's data as JSON to this file")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, help="Only this version")] = None,
    last: Annotated[int | None, typer.Option("--last", min=1, help="Only the last N windows")] = None,
    granularity: GranularityOption = None,
) -> None:
    """Write the model's monitoring report: summary, distributions reference vs current, drift, performance
    and latency over time, and the alert log. Reads the computed windows: run `loopml monitor run` first."""
    from loopml.monitoring.report import build_report
    from loopml.tracking.tracker import default_tracker

    built = build_report(
        default_tracker(), model, version=version, granularity=granularity_of(model, granularity), last=last
    )
    written = built.to_html(output)
    typer.echo(f"wrote {written} ({built.summary['windows']} windows of {model})")
    if json_path is not None:
        typer.echo(f"wrote {built.to_json(json_path)}")
