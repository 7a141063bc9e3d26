"""`loopml score MODEL INPUT -o OUTPUT`: batch scoring of a CSV or Parquet file of any size, chunk by chunk;
with `--executor ray`, of Parquet files (local or s3://) on a Ray cluster."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from loopml.cli.output import console, errors, print_json


class OnError(StrEnum):
    """What to do with rows that do not match the model's signature."""

    reject = "reject"
    fail = "fail"


def score(
    ref: Annotated[str, typer.Argument(help="Model: NAME, NAME@vN or NAME@ALIAS")],
    input_path: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="CSV or Parquet file to score; with --executor ray: Parquet file, folder or glob, local or s3://",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Where to write: .csv, .parquet or .pq; with --executor ray: a new folder"
        ),
    ],
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Rows read and scored at a time")
    ] = 50_000,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects", help="File for rows that break the signature, with reasons (.csv, .parquet or .pq)"
        ),
    ] = None,
    on_error: Annotated[
        OnError | None,
        typer.Option(
            "--on-error", help="reject (needs --rejects) or fail; default: reject when --rejects is set"
        ),
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the predictions to the log")] = False,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Input column holding prediction ids (for feedback)")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also reject unseen categories and out-of-range numbers")
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="local (this process), ray (RAY_ADDRESS, else a new local cluster) or ray://HOST:PORT",
        ),
    ] = "local",
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Score a file with a model: predictions (and class probabilities) appended to the input columns.

    Rows that break the model's signature go to --rejects with their reasons; without it the command stops
    at the first one (exit 1) and writes nothing. The job is recorded as a run.

    With --executor ray, Ray Data scores Parquet input (a file, a folder or a glob such as
    's3://bucket/in/*.parquet') into a folder of Parquet part files, in no particular row order. There
    --rejects (a local or s3:// file) names each bad row's input file in `_file` instead of its row
    number (`_row`): use --id-column to tell rows apart. The predictions are logged by reading the output
    back through this process (--no-log skips that pass).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loopml.core.errors import InvalidInput
    from loopml.serving.batch import score as run_scoring

    if on_error is OnError.fail and rejects is not None:
        raise InvalidInput("--on-error fail and --rejects contradict each other: give one of them")
    if on_error is OnError.reject and rejects is None:
        raise InvalidInput("--on-error reject needs a reject file: add --rejects FILE")
    columns = (
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, disable=not errors.is_terminal, transient=True) as bar:
        task = bar.add_task("scoring", total=None)
        result = run_scoring(
            ref,
            input_path,
            output,
            chunk_rows=chunk_rows,
            rejects=rejects,
            log=not no_log,
            id_column=id_column,
            strict=strict,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            executor=executor,
        )
    if json_output:
        print_json(result)
        return
    rejected = f", {result.rejected} rejected -> {escape(str(result.rejects))}" if result.rejects else ""
    if executor.strip() != "local":
        console.print(
            f"{escape(result.model)}@v{result.version}: scored {result.scored} rows on Ray -> "
            f"{escape(result.output)}{rejected}  (run {result.run_id})"
        )
        return
    console.print(
        f"{escape(result.model)}@v{result.version}: scored {result.scored} of {result.rows} rows in "
        f"{result.chunks} chunk(s) -> {escape(result.output)}{rejected}  (run {result.run_id})"
    )
