"""`loopml predictions list|prune`: the prediction log's segments, and retention."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from loopml.cli.output import console, print_json, table, when

app = typer.Typer(
    help="The prediction log: segments written by serving and batch scoring.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@app.command("list")
def list_segments(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, help="Only this version")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the closed segments of a model's prediction log, oldest first."""
    from loopml.predictions import segments
    from loopml.tracking.tracker import default_tracker

    found = segments(default_tracker(), model, version=version)
    if json_output:
        print_json(found)
        return
    rows = [
        (
            s.segment_id[:12],  # enough to tell segments apart; --json has the whole id
            f"v{s.version}",
            f"{s.route}/{s.source}",
            s.rows,
            when(s.start_time),
            when(s.end_time)[-8:],  # a segment spans minutes: the end's time of day
        )
        for s in found
    ]
    table(
        f"Prediction log of {model}",
        ["segment", "version", "route/source", "rows", "from", "to"],
        rows,
    )


@app.command("prune")
def prune(
    model: Annotated[str | None, typer.Argument(help="Model name (default: every model)")] = None,
    older_than_days: Annotated[
        float, typer.Option("--older-than-days", min=0, help="Keep segments with predictions this recent")
    ] = 30.0,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete for real (default: only say what would go)")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Drop prediction log segments older than the retention period; `loopml gc` then frees their files."""
    from loopml.predictions import prune as prune_segments
    from loopml.tracking.tracker import default_tracker

    done = prune_segments(default_tracker(), model, older_than_days=older_than_days, dry_run=not yes)
    if json_output:
        print_json(done)
        return
    what = f"{done.segments} segment(s), {done.rows} prediction(s), {done.bytes / 2**20:.1f} MiB"
    scope = escape(model) if model else "every model"
    if done.dry_run:
        console.print(
            f"Would prune {what} of {scope} ended before {when(done.cutoff_ms)}; add --yes to do it"
        )
    else:
        console.print(f"Pruned {what} of {scope}; run `loopml gc --yes` to free the files")
