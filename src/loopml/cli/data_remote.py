"""`loopml data push|pull`: share dataset versions through a remote blob store (a folder, `s3://`).

Registered onto the `data` command group; the progress bar goes to stderr, so stdout stays the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli.data import app
from loopml.cli.output import errors, print_json

if TYPE_CHECKING:
    from loopml.storage.blobs.transfer import Progress

RefsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="REF",
        show_default=False,
        help="NAME@v3 or NAME (its newest version); default: every version of every dataset",
    ),
]
RemoteOption = Annotated[
    str, typer.Option("--remote", metavar="URL", help="A folder or fsspec URL, e.g. s3://bucket/prefix")
]
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        metavar="URL",
        envvar="LOOPML_S3_ENDPOINT_URL",
        help="S3-compatible server (MinIO, Ceph, rclone); credentials come from AWS_ACCESS_KEY_ID etc.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON")]
WorkersOption = Annotated[int, typer.Option("--workers", min=1, max=256, help="Objects copied at once")]


@app.command("push")
def push(
    remote: RemoteOption,
    refs: RefsArgument = None,
    endpoint_url: EndpointOption = None,
    workers: WorkersOption = 8,
    json_output: JsonOption = False,
) -> None:
    """Copy dataset versions' objects (files, trees, profiles) that the remote lacks."""
    _transfer("push", remote, refs, endpoint_url, workers, json_output)


@app.command("pull")
def pull(
    remote: RemoteOption,
    refs: RefsArgument = None,
    endpoint_url: EndpointOption = None,
    workers: WorkersOption = 8,
    json_output: JsonOption = False,
) -> None:
    """Copy the objects of versions this project knows from the remote, when they are missing here."""
    _transfer("pull", remote, refs, endpoint_url, workers, json_output)


def _transfer(
    action: str,
    remote: str,
    refs: list[str] | None,
    endpoint_url: str | None,
    workers: int,
    json_output: bool,
) -> None:
    from loopml import datasets
    from loopml.data import remote as remotes

    transfer = remotes.push if action == "push" else remotes.pull
    doing, done = ("Pushing", "Pushed") if action == "push" else ("Pulling", "Pulled")
    with _progress_bar(doing) as progress:
        report = transfer(
            datasets.catalog(),
            remote,
            refs or None,  # no REF given: every version
            endpoint_url=endpoint_url,
            workers=workers,
            progress=progress,
        )
    if json_output:
        print_json(report)
    else:
        mib = report.bytes / 2**20
        typer.echo(f"{done} {report.copied} objects ({mib:.1f} MiB), {report.skipped} already there")


@contextlib.contextmanager
def _progress_bar(verb: str) -> Iterator[Progress]:
    """A Rich progress bar on stderr fed by `copy_missing`'s (done, total) calls; gone when finished."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # Transient, and off when stderr is not a terminal (Rich would still print an empty line there): a
    # failure leaves exactly one line on stderr, and logs of scripted transfers hold no bar remnants.
    bar = Progress(
        TextColumn(f"{verb} objects"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    task = bar.add_task(verb, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update
