"""`loopml data ...`: add, list, show, log, get and diff dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli.output import console, fmt, print_json, table, when

app = typer.Typer(help="Version datasets: files, folders, globs and tables.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Dataset name")],
    path: Annotated[str, typer.Argument(help="File, folder or glob pattern (quote it)")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="What changed")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Store a table that breaks its expectations as rejected")
    ] = False,
    no_copy: Annotated[
        bool, typer.Option("--no-copy", help="Track in place (e.g. s3://...): fingerprints only")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Add a new immutable version (identical content adds none and says so)."""
    from loopml import datasets

    added = datasets.add(name, path, message=message, force=force, no_copy=no_copy)
    version = added.version
    if json_output:
        print_json({"created": added.created, "version": version})
    elif added.created and version.status == "rejected":
        typer.echo(
            f"Stored {version.ref} as REJECTED: it breaks {len(version.validation or [])} expectation(s)"
        )
    elif added.created:
        rows = f", {version.row_count:,} rows" if version.row_count is not None else ""
        typer.echo(f"Added {version.ref}: {version.file_count} file(s), {_size(version.size)}{rows}")
    else:
        typer.echo(f"Unchanged: the content is already {version.ref}; no new version")


@app.command("list")
def list_datasets(json_output: JsonOption = False) -> None:
    """List datasets with their newest version."""
    from loopml import datasets

    found = datasets.datasets()
    if json_output:
        print_json(found)
        return
    table(
        "Datasets",
        ["name", "newest", "created"],
        [(d.name, f"v{d.latest_version}", when(d.created_time)) for d in found],
    )


@app.command("log")
def log(name: str, json_output: JsonOption = False) -> None:
    """Every version of a dataset, newest first."""
    from loopml import datasets

    found = datasets.versions(name)
    if json_output:
        print_json(found)
        return
    rows = [
        (v.ref, v.kind, _size(v.size), v.file_count, v.row_count, when(v.created_time), v.message or "")
        for v in found
    ]
    table(f"{name}", ["version", "kind", "size", "files", "rows", "added", "message"], rows)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@v3")], json_output: JsonOption = False
) -> None:
    """A version: content, schema, profile summary, and the runs that read it."""
    from loopml import datasets
    from loopml.data.profiling import summary_statistics
    from loopml.tracking.client import Client

    data = datasets.catalog()
    version = data.get(ref)
    profile = data.profile(version)
    runs = Client().runs_with_input(version.name, f"v{version.version}")
    if json_output:
        print_json({"version": version, "profile": profile, "runs": runs})
        return
    table(
        version.ref,
        ["field", "value"],
        [
            ("kind", version.kind),
            ("digest", version.digest),
            ("size", _size(version.size)),
            ("files", version.file_count),
            ("rows", version.row_count),
            ("source", version.source),
            ("message", version.message),
            ("git commit", version.git_commit),
            ("added", when(version.created_time)),
        ],
    )
    if version.schema:
        stats = summary_statistics(profile)
        columns = ["column", "type", "logical", "nullable", "nulls", "mean", "std", "min", "max", "distinct"]
        rows = []
        for column in version.schema:
            s = stats.get(column["name"], {})
            numbers = [fmt(s.get(k)) for k in ("nulls", "mean", "std", "min", "max", "distinct")]
            rows.append((column["name"], column["type"], column["logical"], column["nullable"], *numbers))
        table("Schema and profile", columns, rows)
    elif version.kind == "folder":
        entries = data.tree(version).entries
        table(f"Files ({len(entries)})", ["path", "size"], [(e.path, _size(e.size)) for e in entries[:50]])
        if len(entries) > 50:
            console.print(f"... and {len(entries) - 50} more")
    table("Runs that read it", ["run id"], [(r,) for r in runs]) if runs else console.print(
        "No run has read it yet."
    )


@app.command("get")
def get(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@v3")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to restore into")] = Path("."),
) -> None:
    """Restore a version's files (each verified by its hash)."""
    from loopml import datasets

    written = datasets.get(ref, output)
    typer.echo(f"Restored {len(written)} file(s) of {ref} into {output}")


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="NAME@v1")],
    new: Annotated[str, typer.Argument(help="NAME@v2")],
    json_output: JsonOption = False,
) -> None:
    """Files added/removed/changed; for tables rows, schema changes and per-column statistic shifts."""
    from loopml import datasets

    result = datasets.catalog().diff(old, new)
    if json_output:
        print_json(result)
        return
    lines = [f"{old} -> {new}"]
    lines += [f"  + {p}" for p in result.added] + [f"  - {p}" for p in result.removed]
    lines += [f"  ~ {p}" for p in result.changed]
    if result.rows != (None, None):
        lines.append(f"  rows: {fmt(result.rows[0])} -> {fmt(result.rows[1])}")
    lines += [f"  column added: {c}" for c in result.columns_added]
    lines += [f"  column removed: {c}" for c in result.columns_removed]
    lines += [f"  column {c}: {a} -> {b}" for c, (a, b) in result.type_changes.items()]
    typer.echo("\n".join(lines) if len(lines) > 1 else f"{old} and {new} hold the same content")
    if result.statistics:
        rows = [
            (column, stat, fmt(a), fmt(b))
            for column, changes in result.statistics.items()
            for stat, (a, b) in changes.items()
        ]
        table("Statistics that moved", ["column", "statistic", old, new], rows)


def _print_changes(headline: str, changes: dict[str, list[str]]) -> None:
    typer.echo(headline)
    for label, names in changes.items():
        for name in names:
            typer.echo(f"  {label}: {name}")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@app.command("status")
def status(
    path: Annotated[Path, typer.Argument(help="A file or folder that was added")],
    ref: Annotated[
        str | None, typer.Option("--ref", help="Version to compare with (default: its pointer's)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Whether a working file or folder still matches its version (unchanged files are not re-read)."""
    from loopml import datasets

    result = datasets.status(path, ref)
    if json_output:
        print_json({**vars(result), "clean": result.clean})
    else:
        headline = "matches" if result.clean else "differs from"
        changes = {"added": result.added, "removed": result.removed, "modified": result.modified}
        _print_changes(f"{path}: {headline} {result.ref}", changes)
    if not result.clean:
        raise typer.Exit(1)


@app.command("changed")
def changed(
    ref: Annotated[str, typer.Argument(help="An external version (added with --no-copy)")],
    json_output: JsonOption = False,
) -> None:
    """Whether the data an external version points to changed since it was added (exit 1 if it did)."""
    from loopml import datasets

    data = datasets.catalog()
    version = data.get(ref)
    result = data.external_changes(version)
    if json_output:
        print_json(result)
    else:
        headline = "unchanged" if result.identical else "changed"
        changes = {"added": result.added, "removed": result.removed, "changed": result.changed}
        _print_changes(f"{version.source}: {headline} since {version.ref}", changes)
    if not result.identical:
        raise typer.Exit(1)


@app.command("checkout")
def checkout(
    root: Annotated[Path, typer.Argument(help="Folder to look for pointer files in")] = Path("."),
    remote: Annotated[
        str | None, typer.Option(help="Fetch what the pointers need from this remote first")
    ] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint (or LOOPML_S3_ENDPOINT_URL)")] = None,
) -> None:
    """Restore the data that the pointer files (NAME.loopml.yaml) under ROOT name."""
    from loopml import datasets

    done = datasets.checkout(root, remote=remote, endpoint_url=endpoint_url)
    if not done:
        typer.echo(f"No pointer files (*.loopml.yaml) under {root}")
    for ref, written, kept in done:
        typer.echo(f"{ref}: restored {written} file(s), {kept} already matched")
