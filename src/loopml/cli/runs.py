"""`loopml runs ...`: list, show, compare, delete and restore runs."""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer
from rich.markup import escape

from loopml.cli.output import Styled, console, duration, fmt, print_json, table, when

app = typer.Typer(help="List, inspect, compare, delete and restore runs.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

# Metric names whose best value is the smallest; every other metric is better when larger.
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "mape", "logloss", "log_loss", "latency", "time")


@app.command("list")
def list_runs(
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment id or name")
    ] = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", "-f", help='e.g. metrics.auc > 0.9 and params.model = "rf"')
    ] = None,
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", "-o", help='e.g. "metrics.auc DESC"')
    ] = None,
    max_results: Annotated[int, typer.Option("--max-results", "-n", min=1, max=50_000)] = 100,
    page_token: Annotated[str | None, typer.Option(help="Token printed by the previous page")] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include soft-deleted runs")] = False,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first, optionally filtered and ordered."""
    from loopml.tracking.client import Client

    page = Client().search_runs(
        experiment,
        filter_,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
        include_deleted=deleted,
    )
    if json_output:
        print_json({"runs": page.runs, "next_page_token": page.next_page_token})
        return
    metric_names = sorted({k for r in page.runs for k in r.metrics})[:6]
    rows = [
        (
            r.run_id,
            r.name,
            r.status.value,
            when(r.start_time),
            duration(r.duration_ms),
            *[fmt(r.metrics.get(m)) for m in metric_names],
        )
        for r in page.runs
    ]
    table(
        f"Runs ({len(page.runs)})", ["run id", "name", "status", "started", "duration", *metric_names], rows
    )
    if page.next_page_token:
        console.print(f"more: --page-token {page.next_page_token}")


@app.command("show")
def show(run_id: str, json_output: JsonOption = False) -> None:
    """Show a run: status, code, environment, params, metrics, tags, artifacts and inputs."""
    from loopml.tracking.client import Client

    client = Client()
    run = client.get_run(run_id)
    artifacts = client.list_artifacts(run_id)
    inputs = client.list_inputs(run_id)
    if json_output:
        print_json({"run": run, "artifacts": artifacts, "inputs": inputs})
        return
    git = run.git
    code = (
        "-"
        if git.commit is None
        else f"{git.commit[:12]} ({git.branch or 'detached'}{', dirty' if git.dirty else ''})"
    )
    table(
        f"Run {run.name}",
        ["field", "value"],
        [
            ("run id", run.run_id),
            ("experiment", run.experiment_id),
            ("status", run.status.value + (f" ({run.error})" if run.error else "")),
            ("started", when(run.start_time)),
            ("duration", duration(run.duration_ms)),
            ("parent", run.parent_run_id),
            ("entry point", run.entry_point),
            ("git", code),
            ("environment", run.environment_hash[:12] if run.environment_hash else None),
            ("note", run.note),
        ],
    )
    for title, values in (("Params", run.params), ("Metrics (latest)", run.metrics), ("Tags", run.tags)):
        if values:
            table(title, ["key", "value"], sorted(values.items()))
    if artifacts:
        table("Artifacts", ["path", "size", "digest"], [(a.path, a.size, a.digest[:16]) for a in artifacts])
    if inputs:
        table(
            "Inputs", ["dataset", "version", "context"], [(i.dataset, i.version, i.context) for i in inputs]
        )


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids")],
    json_output: JsonOption = False,
) -> None:
    """Params and latest metrics of runs side by side; the best value of each metric is highlighted."""
    from loopml.tracking.client import Client

    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids to compare", param_hint="RUN_IDS")
    client = Client()
    found = [client.get_run(r) for r in run_ids]
    params = sorted({k for r in found for k in r.params})
    metrics = sorted({k for r in found for k in r.metrics})
    if json_output:
        print_json(
            {
                "runs": [r.run_id for r in found],
                "params": {k: [r.params.get(k) for r in found] for k in params},
                "metrics": {k: [r.metrics.get(k) for r in found] for k in metrics},
                "best": {k: _best(k, [r.metrics.get(k) for r in found]) for k in metrics},
            }
        )
        return
    rows: list[list[str]] = []
    for key in params:
        texts = [r.params.get(key) for r in found]
        differs = len(set(texts)) > 1
        rows.append(
            [f"params.{key}", *[Styled(f"[yellow]{escape(fmt(v))}[/]") if differs else fmt(v) for v in texts]]
        )
    for key in metrics:
        values = [r.metrics.get(key) for r in found]
        best = _best(key, values)
        rows.append(
            [
                f"metrics.{key}",
                *[
                    Styled(f"[bold green]{escape(fmt(v))}[/]") if i == best else fmt(v)
                    for i, v in enumerate(values)
                ],
            ]
        )
    table("Compare runs", ["", *[r.name for r in found]], rows)


def _best(key: str, values: list[float | None]) -> int | None:
    """Index of the best value (smallest for loss-like names), ignoring missing and NaN."""
    candidates = [(v, i) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if not candidates:
        return None
    lower = any(word in key.lower() for word in _LOWER_IS_BETTER)
    return (min(candidates) if lower else max(candidates, key=lambda c: (c[0], -c[1])))[1]


@app.command("diff")
def diff(run_id: str) -> None:
    """Print the uncommitted change the run started from (apply it with `git apply` on its commit)."""
    from loopml.tracking.client import Client

    client = Client()
    text = client.get_code_diff(run_id)
    if text is None:
        commit = client.get_run(run_id).git.commit
        typer.echo(f"# run {run_id} started from a clean tree at {commit or 'no git commit'}", err=True)
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command("config-diff")
def config_diff(old_run: str, new_run: str) -> None:
    """Line-by-line differences of the config files two runs logged with `log_config`."""
    from loopml.tracking.client import Client

    diffs = Client().config_diff(old_run, new_run)
    if not diffs:
        typer.echo("The runs logged identical config files (or none)")
    for text in diffs.values():
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command("env")
def env(run_id: str, json_output: JsonOption = False) -> None:
    """Print the run's Python environment: `name==version` lines, ready for `pip install -r`."""
    from loopml.tracking.client import Client

    environment = Client().get_environment(run_id)
    if json_output:
        print_json(environment)
        return
    typer.echo(f"# Python {environment['python_version']} on {environment['platform']}")
    for name, version in sorted(environment["packages"].items()):
        typer.echo(f"{name}=={version}")


@app.command("delete")
def delete(run_ids: Annotated[list[str], typer.Argument(help="Run ids")]) -> None:
    """Soft-delete runs (restorable with `loopml runs restore` until `loopml gc`)."""
    from loopml.tracking.client import Client

    client = Client()
    for run_id in run_ids:
        client.delete_run(run_id)
    typer.echo(f"Deleted {len(run_ids)} run(s); `loopml runs restore` undoes it until `loopml gc`")


@app.command("restore")
def restore(run_ids: Annotated[list[str], typer.Argument(help="Run ids")]) -> None:
    """Restore soft-deleted runs."""
    from loopml.tracking.client import Client

    client = Client()
    for run_id in run_ids:
        client.restore_run(run_id)
    typer.echo(f"Restored {len(run_ids)} run(s)")
