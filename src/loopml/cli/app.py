"""The root `loopml` command: project set-up, database upgrades, garbage collection, and error handling.

Every `LoopMLError` becomes one line on stderr and the error's exit code (2 for bad input, 3 for an unusable
store); usage errors exit 2 (Click's convention). No traceback reaches the user for an error LoopML expected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import loopml.cli.data_remote  # noqa: F401 - registers `data push` and `data pull`
from loopml.cli import (
    agent,
    data,
    deploy,
    experiments,
    import_mlflow,
    models,
    monitor,
    pipeline,
    predictions,
    runs,
    score,
    serve,
    server,
    ui,
)
from loopml.cli.output import errors, print_json
from loopml.core.errors import LoopMLError
from loopml.core.settings import PROJECT_FILE, load_settings

app = typer.Typer(
    name="loopml",
    help="LoopML: track, version, serve and monitor ML models, and keep them accurate by themselves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(experiments.app, name="experiments")
app.add_typer(import_mlflow.app, name="import")
app.add_typer(runs.app, name="runs")
app.add_typer(data.app, name="data")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(models.app, name="models")
app.add_typer(predictions.app, name="predictions")
app.command("score")(score.score)
app.add_typer(deploy.app, name="deploy")
app.add_typer(monitor.app, name="monitor")
app.command("serve")(serve.serve)
app.add_typer(agent.app, name="agent")
app.add_typer(server.app, name="server")
app.command("ui")(ui.ui)
app.command("timeline")(agent.timeline)
db_app = typer.Typer(help="Inspect and upgrade the metadata database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

PROJECT_TEMPLATE = """\
# LoopML project settings. Every key can also be set with a LOOPML_<KEY> environment variable,
# which wins over this file. Paths are relative to this file's folder.

# experiment = "Default"            # experiment of runs that name none
# home = ".loopml"                  # where the local store lives
# database_url = "postgresql+psycopg://user@host/db"   # a team database instead of SQLite
# artifact_url = "s3://bucket/loopml"                  # a team blob store instead of .loopml/blobs
# flush_interval_s = 1.0            # max age of a buffered metric point
"""


@app.command()
def demo(
    folder: Annotated[
        Path, typer.Option("--dir", help="Project folder the demo creates (emptied first)")
    ] = Path("demo-project"),
) -> None:
    """The whole closed loop on built-in data in under two minutes: train, serve, drift, retrain, canary,
    promote; then the timeline and where to look. Stops every process it started."""
    from loopml.demo.closed_loop import run_demo

    raise typer.Exit(run_demo(folder.resolve()))


@app.command()
def init(force: Annotated[bool, typer.Option(help="Overwrite an existing loopml.toml")] = False) -> None:
    """Create loopml.toml and the .loopml/ store in the current folder."""
    from loopml.storage.stores import Stores

    project = Path.cwd()
    config = project / PROJECT_FILE
    if config.exists() and not force:
        errors.print(f"{PROJECT_FILE} already exists here; the project is ready (use --force to rewrite it)")
    else:
        config.write_text(PROJECT_TEMPLATE)
    stores = Stores.open(load_settings(project_dir=project))
    stores.close()
    typer.echo(f"Initialised a LoopML project in {project}")


@app.command()
def gc(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete for real (default: only say what would go)")
    ] = False,
    grace_hours: Annotated[float, typer.Option(min=0, help="Keep blobs written this recently")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Purge soft-deleted runs and blobs no version or run refers to. A dry run unless --yes."""
    from loopml.tracking.client import Client

    report = Client().gc(blob_grace_s=grace_hours * 3600, dry_run=not yes)
    if json_output:
        print_json(report)
    elif report.dry_run:
        freed = report.freed_bytes or 0
        typer.echo(
            f"Would purge {len(report.purged_runs)} deleted run(s) and remove {report.removed_blobs} "
            f"unreferenced blob(s), freeing {freed / 2**20:.1f} MiB; run `loopml gc --yes` to do it"
        )
    else:
        typer.echo(f"Purged {len(report.purged_runs)} deleted run(s); removed {report.removed_blobs} blob(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to this LoopML's revision (the only way PostgreSQL is migrated)."""
    from loopml.storage.metadata.database import Database

    settings = load_settings()
    database = Database(settings.metadata_url, busy_timeout_s=settings.busy_timeout_s, auto_migrate=True)
    revision = database.revision()
    database.dispose()
    typer.echo(f"Database schema is at revision {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database and the one this LoopML expects."""
    from loopml.storage.metadata.database import Database
    from loopml.storage.metadata.schema import SCHEMA_HEAD

    settings = load_settings()
    database = Database(settings.metadata_url, busy_timeout_s=settings.busy_timeout_s, auto_migrate=False)
    typer.echo(f"database: {database.revision()}  expected: {SCHEMA_HEAD}")
    database.dispose()


@app.command()
def version() -> None:
    """Print the LoopML version."""
    from loopml._version import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the `loopml` console script."""
    try:
        app(standalone_mode=True)
    except LoopMLError as error:
        errors.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
