"""`loopml import mlflow --from URI`: copy an MLflow tracking server's or `mlruns` folder's experiments, runs,
logged models and registered models into this project (resumable: run it again to finish or to catch up)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from loopml.cli.output import console, errors, print_json

app = typer.Typer(
    help="Copy experiments, runs and models from other tools into this project.", no_args_is_help=True
)


@app.command("mlflow")
def mlflow(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="An mlruns folder (path or file:// URI) or an MLflow server's http(s):// URL",
            show_default=False,
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Import runs and models from an MLflow server or mlruns folder.

    Copies experiments, runs (params, tags, metric histories, artifacts), logged models and registered models
    (versions, tags, aliases). What an earlier import copied is skipped, so an interrupted import resumes.
    A server's credentials come from MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD. Exits 1 when something could not be imported (each is listed with why).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loopml.mlflow.importer import ImportProgress, import_mlflow, open_source
    from loopml.mlflow.source_rest import credentials_from_env
    from loopml.tracking.tracker import default_tracker

    opened = open_source(
        source, **credentials_from_env(os.environ)
    )  # a bad source fails before the project opens
    bar = Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    task = bar.add_task("experiments", total=None)

    def show(step: ImportProgress) -> None:
        bar.update(task, description=step.stage, completed=step.done, total=step.total)

    try:
        with bar:
            report = import_mlflow(default_tracker(), opened, progress=show)
    finally:
        opened.close()
    if json_output:
        print_json(report)
    else:
        for note in report.notes:
            errors.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
        for refused in report.refused:
            errors.print(f"[yellow]not imported:[/] {escape(refused)}", highlight=False, soft_wrap=True)
        console.print(escape(report.summary()), highlight=False, soft_wrap=True)
    if report.refused:
        raise typer.Exit(1)
