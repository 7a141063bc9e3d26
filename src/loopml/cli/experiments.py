"""`loopml experiments ...`"""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.cli.output import print_json, table, when

app = typer.Typer(help="List and create experiments.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@app.command("list")
def list_experiments(json_output: JsonOption = False) -> None:
    """List experiments."""
    from loopml.tracking.client import Client

    found = Client().list_experiments()
    if json_output:
        print_json(found)
        return
    table(
        "Experiments",
        ["id", "name", "created"],
        [(e.experiment_id, e.name, when(e.created_time)) for e in found],
    )


@app.command("create")
def create(name: str, description: Annotated[str | None, typer.Option(help="Free text")] = None) -> None:
    """Create an experiment."""
    from loopml.tracking.client import Client

    experiment = Client().create_experiment(name, description)
    typer.echo(experiment.experiment_id)
