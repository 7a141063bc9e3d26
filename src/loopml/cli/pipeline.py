"""`loopml pipeline ...`: run a pipeline, list and show its runs, explain a re-run, resume a failed run."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.tree import Tree

from loopml.cli.output import console, duration, errors, print_json, table, when
from loopml.core.errors import InvalidInput
from loopml.core.plain import to_plain

if TYPE_CHECKING:
    from loopml.pipelines.params import Source
    from loopml.pipelines.records import PipelineRunRecord, StepRecord

app = typer.Typer(help="Run pipelines and inspect their runs.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

_MARKS = {
    "finished": "[green]✓ ran[/]",
    "cached": "[cyan]↺ cached[/]",
    "failed": "[red]✗ failed[/]",
    "skipped": "[yellow]- skipped[/]",
    "running": "[blue]… running[/]",
}


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help="module:function or path/to/file.py:function")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE, repeatable (YAML values: 3, 0.1, [1,2])"),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            "-x",
            help="threads (default), inline, processes, threads:4, ray (RAY_ADDRESS or a local cluster), "
            "ray://HOST:PORT",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live step display")] = True,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse outputs of identical step calls")
    ] = True,
    params_json: Annotated[
        str | None, typer.Option("--params-json", help='All params as one JSON object: {"C": 0.5}')
    ] = None,
    rerun_of: Annotated[str | None, typer.Option(hidden=True)] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a pipeline and print what it returns."""
    from loopml.pipelines.pipeline import load_pipeline

    found = load_pipeline(target)
    params: dict[str, Any] = _parse_params(param or [])
    source: Source = "text"
    if params_json is not None:
        if params:
            raise InvalidInput("give params with -p or --params-json, not both")
        params, source = _json_params(params_json), "stored"
    # What steps print goes to stderr: stdout carries only the pipeline's value, so it can be piped.
    with contextlib.redirect_stdout(sys.stderr):
        if progress and not json_output and errors.is_terminal:
            live_tree = _LiveSteps(found.name)
            with Live(live_tree.tree, console=errors, refresh_per_second=8, transient=False):
                result = found.run(
                    params,
                    executor=executor,
                    params_from=source,
                    progress=live_tree.update,
                    use_cache=cache,
                    rerun_of=rerun_of,
                )
        else:
            result = found.run(
                params, executor=executor, params_from=source, use_cache=cache, rerun_of=rerun_of
            )
    if json_output:
        print_json({"run_id": result.run_id, "value": _jsonable(result.value)})
        return
    errors.print(f"pipeline run {result.run_id}: {_summary(result.record)}", highlight=False)
    _print_value(result.value)


@app.command("list")
def list_runs(
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="module:function")] = None,
    max_results: Annotated[int, typer.Option("--max-results", "-n", min=1, max=10_000)] = 50,
    json_output: JsonOption = False,
) -> None:
    """List pipeline runs, newest first."""
    store = _store()
    runs = store.list_runs(pipeline=pipeline, limit=max_results)
    if json_output:
        print_json(runs)
        return
    rows = [
        (
            r.run_id,
            r.pipeline.rpartition(":")[2],
            r.status,
            r.mode,
            when(r.created_time),
            _elapsed(r),
            _params(r),
        )
        for r in runs
    ]
    table("Pipeline runs", ["run", "pipeline", "status", "mode", "started", "took", "params"], rows)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Pipeline run id")],
    logs: Annotated[
        str | None, typer.Option("--logs", help="Also print the captured log of this step")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Show a pipeline run as a tree of its steps: ran, cached, failed or skipped, with durations."""
    store = _store()
    record = store.get_run(run_id)
    if json_output:
        print_json(record)
        return
    console.print(_tree(record))
    failed = [s for s in record.steps if s.status.value == "failed"]
    for step in failed:
        console.print(f"\n[red]step {escape(step.node)} failed:[/]\n{escape(step.error or '')}")
    if logs is not None:
        _print_log(record, logs)


@app.command("explain")
def explain_step(
    run_id: Annotated[str, typer.Argument(help="Pipeline run id")],
    step: Annotated[
        str, typer.Argument(help="Step name as shown by `pipeline show` (e.g. train or train#2)")
    ],
    json_output: JsonOption = False,
) -> None:
    """Say why a step re-ran (which part of its cache key changed) or why it was cached."""
    from loopml.pipelines.explain import explain

    explanation = explain(_store(), run_id, step)
    if json_output:
        print_json(explanation)
        return
    console.print(
        f"[bold]{escape(explanation.node)}[/]: {_MARKS[explanation.status.value]} (cache {explanation.cache.value})"
    )
    if explanation.compared_with:
        console.print(f"compared with step run {explanation.compared_with}")
    for reason in explanation.reasons:
        console.print(f"  {escape(reason)}")


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="The pipeline run to resume")],
    executor: Annotated[
        str | None, typer.Option("--executor", "-x", help="as for `pipeline run` (e.g. processes:2, ray)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a failed pipeline run again, re-running only its failed and skipped steps (and what depends on them)."""
    from loopml.pipelines.pipeline import load_pipeline

    record = _store().get_run(run_id)
    found = load_pipeline(record.pipeline)
    with contextlib.redirect_stdout(sys.stderr):
        result = found.run(record.params, executor=executor, resume_from=record, params_from="stored")
    if json_output:
        print_json({"run_id": result.run_id, "value": _jsonable(result.value)})
        return
    errors.print(
        f"pipeline run {result.run_id} (resumes {run_id}): {_summary(result.record)}", highlight=False
    )
    _print_value(result.value)


@app.command("rerun")
def rerun_run(
    run_id: Annotated[str, typer.Argument(help="The pipeline run to reproduce")],
    executor: Annotated[
        str | None, typer.Option("--executor", "-x", help="as for `pipeline run` (e.g. processes:2, ray)")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Reproduce a run from its commit, stored diff, params and data; exit 1 if any output differs."""
    from loopml.pipelines.rerun import rerun
    from loopml.tracking.tracker import default_tracker

    report = rerun(run_id, tracker=default_tracker(), executor=executor)
    if json_output:
        print_json({**to_plain(report), "reproduced": report.reproduced})
    else:
        diff = " + stored diff" if report.applied_diff else ""
        console.print(f"re-ran {run_id} at {report.commit[:12]}{diff} as run {report.rerun_run_id}")
        for step in report.steps:
            mark = "[green]same outputs[/]" if step.same else "[red]outputs differ[/]"
            console.print(f"  {escape(step.node)}  {mark}")
        console.print("reproduced" if report.reproduced else "[red]not reproduced[/]")
    if not report.reproduced:
        raise typer.Exit(1)


class _LiveSteps:
    """The live display of a running pipeline: one line per step call, updated as calls start and end."""

    def __init__(self, name: str) -> None:
        self.tree = Tree(f"[bold]{escape(name)}[/]")
        self.lines: dict[str, Any] = {}

    def update(self, node: str, record: StepRecord | None) -> None:
        text = f"{escape(node)}  {_MARKS['running']}" if record is None else _line(record)
        if node in self.lines:
            self.lines[node].label = text
        else:
            self.lines[node] = self.tree.add(text)


def _tree(record: PipelineRunRecord) -> Tree:
    title = f"[bold]{escape(record.pipeline)}[/]  run {record.run_id}  {record.status}  {_summary(record)}"
    tree = Tree(title)
    branches: dict[str, Tree] = {}
    for step in record.steps:
        parent = branches.get(step.upstream[0], tree) if step.upstream else tree
        label = _line(step)
        if len(step.upstream) > 1:
            label += f"  [dim](also reads {escape(', '.join(step.upstream[1:]))})[/]"
        branches[step.node] = parent.add(label)
    return tree


def _line(step: StepRecord) -> str:
    took = duration(step.duration_ms) if step.status.value == "finished" else ""
    note = f"from {step.cached_from}" if step.status.value == "cached" else ""
    if step.status.value == "failed" and step.attempts > 1:
        note = f"after {step.attempts} attempts"
    if step.cache.value == "unavailable":
        note = f"uncached: {step.cache_note}"
    return f"{escape(step.node)}  {_MARKS[step.status.value]}  {took}  [dim]{escape(note)}[/]".rstrip()


def _summary(record: PipelineRunRecord) -> str:
    counts: dict[str, int] = {}
    for step in record.steps:
        counts[step.status.value] = counts.get(step.status.value, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no steps"


def _params(record: PipelineRunRecord) -> str:
    text = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in record.params.items())
    return text if len(text) <= 60 else text[:57] + "..."


def _elapsed(record: PipelineRunRecord) -> str:
    return duration(record.end_time - record.created_time) if record.end_time else "-"


def _print_log(record: PipelineRunRecord, node: str) -> None:
    from loopml.tracking.client import Client

    try:
        step = record.step(node)
    except KeyError:
        raise InvalidInput(f"run {record.run_id} has no step {node!r}") from None
    if step.run_id is None:
        console.print(f"step {escape(node)} did not run: no log")
        return
    client = Client()
    found = [a for a in client.list_artifacts(step.run_id) if a.path == "logs/step.log"]
    if not found:
        console.print(f"step {escape(node)} printed nothing")
        return
    console.print(f"\n[bold]log of {escape(node)}[/]")
    data = client.tracker.blobs.get_bytes(found[0].digest)
    console.out(data.decode(errors="replace"), highlight=False)


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"a param is KEY=VALUE, got {pair!r}")
        params[key.strip()] = value
    return params


def _json_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"--params-json is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise InvalidInput("--params-json must be a JSON object of param names to values")
    return params


def _jsonable(value: Any) -> Any:
    plain = to_plain(value)
    try:
        json.dumps(plain)
    except (TypeError, ValueError):
        return repr(value)
    return plain


def _print_value(value: Any) -> None:
    plain = to_plain(value)
    try:
        text = json.dumps(plain, indent=2, sort_keys=True)
    except (TypeError, ValueError):
        text = str(value)
    console.out(text, highlight=False)


def _store() -> Any:
    from loopml.pipelines.store import pipeline_store
    from loopml.tracking.tracker import default_tracker

    return pipeline_store(default_tracker())
