"""`loopml models ...`: list models and versions, show a version, move aliases, promote, compare, the alias
history, download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from loopml.cli.output import console, print_json, table, when

app = typer.Typer(help="The model registry: versions, aliases and their history.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


@app.command("list")
def list_models(json_output: JsonOption = False) -> None:
    """List registered models with their latest version and aliases."""
    from loopml import models

    found = models.models()
    if json_output:
        print_json(found)
        return
    rows = [
        (
            m.name,
            f"v{m.latest_version}" if m.latest_version else "-",
            ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-",
            m.owner,
            when(m.updated_time),
        )
        for m in found
    ]
    table("Registered models", ["model", "latest", "aliases", "owner", "updated"], rows)


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Model name")],
    run: Annotated[str, typer.Option("--run", help="Run that logged the model")],
    artifact: Annotated[
        str, typer.Option("--artifact", help="The run's skops artifact, e.g. model/model.skops")
    ],
    sample: Annotated[
        str | None, typer.Option("--sample", help="Training rows for the signature: a table dataset NAME@vN")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Label column to drop from the sample")
    ] = None,
    eval_dataset: Annotated[
        str | None, typer.Option("--eval-dataset", help="Held-out rows for the gates")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Register a model a run logged as a skops artifact (loaded with LoopML's allow-list, never pickle)."""
    from loopml import datasets, models
    from loopml.core.errors import InvalidInput
    from loopml.registry.skops_io import loads
    from loopml.tracking.client import Client

    client = Client()
    found = [a for a in client.list_artifacts(run) if a.path == artifact]
    if not found:
        known = ", ".join(a.path for a in client.list_artifacts(run)) or "(none)"
        raise InvalidInput(f"run {run} has no artifact {artifact!r}; its artifacts: {known}")
    if not artifact.endswith(".skops"):
        raise InvalidInput(
            f"{artifact!r} is not a skops file: LoopML registers models saved safely (never pickle)"
        )
    model = loads(client.tracker.blobs.get_bytes(found[0].digest, verify=True))
    rows = None
    if sample is not None:
        rows = datasets.load(sample)
        if target is not None:
            rows = rows.drop(columns=[target])
    registered = models.register(
        name, model, sample=rows, run=run, eval_dataset=eval_dataset, eval_target=target
    )
    if json_output:
        print_json(registered)
        return
    state = "registered" if registered.created else "already registered (same model)"
    console.print(f"{escape(registered.version.ref)} {state}")


@app.command("versions")
def list_versions(
    name: Annotated[str, typer.Argument(help="Model name")], json_output: JsonOption = False
) -> None:
    """List the versions of a model, newest first."""
    from loopml import models

    found = models.versions(name)
    if json_output:
        print_json(found)
        return
    rows = [
        (
            v.ref,
            v.flavor,
            ", ".join(v.aliases) or "-",
            v.run_id,
            _metrics(v.metrics),
            when(v.created_time),
        )
        for v in found
    ]
    table(f"Versions of {name}", ["version", "flavor", "aliases", "run", "metrics", "created"], rows)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@v3 or NAME@ALIAS")], json_output: JsonOption = False
) -> None:
    """Show a version: flavor, libraries, signature, lineage and metrics from its manifest."""
    from loopml import models

    version = models.get(ref)
    manifest = models.manifest(ref)
    if json_output:
        print_json({"version": version, "manifest": manifest})
        return
    console.print(
        f"[bold]{escape(version.ref)}[/]  {escape(version.flavor)}  aliases: {', '.join(version.aliases) or '-'}"
    )
    console.print(f"content hash {version.content_hash[:16]}  package {version.package_digest[:16]}")
    lineage = manifest.get("lineage") or {}
    for key in ("run_id", "pipeline_run_id", "git_commit", "eval_dataset"):
        if lineage.get(key):
            console.print(f"{key}: {escape(str(lineage[key]))}")
    for dataset in lineage.get("datasets", []):
        console.print(f"dataset: {escape(dataset['name'])}@{escape(dataset['version'])}")
    console.print(
        "libraries: " + ", ".join(f"{k}=={v}" for k, v in sorted((manifest.get("libraries") or {}).items()))
    )
    signature = manifest.get("signature") or {}
    if signature:
        rows = [
            (c["name"], c["type"], c.get("nullable"), c.get("levels") or "", _range(c))
            for c in signature["inputs"]
        ]
        table("Signature inputs", ["column", "type", "nullable", "levels", "range"], rows)
    if version.metrics:
        table("Metrics at registration", ["metric", "value"], sorted(version.metrics.items()))


@app.command("alias")
def alias(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS to set or remove")],
    version: Annotated[int | None, typer.Argument(help="Version number to point the alias at", min=1)] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias")] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-m", help="Why (kept in the history)")] = None,
) -> None:
    """Point an alias at a version directly (no gates), or remove it; both are kept in the history."""
    from loopml import models
    from loopml.core.errors import InvalidInput
    from loopml.registry.records import ModelRef

    parsed = ModelRef.parse(ref)
    if parsed.alias is None:
        raise InvalidInput(f"name the alias as NAME@ALIAS, got {ref!r}")
    if delete == (version is not None):
        raise InvalidInput("give a VERSION to point the alias at, or --delete to remove it")
    if delete:
        event = models.delete_alias(parsed.name, parsed.alias, reason=reason)
        console.print(f"{escape(ref)} removed (was v{event.from_version})")
    else:
        event = models.set_alias(parsed.name, parsed.alias, version or 0, reason=reason)
        before = f"v{event.from_version}" if event.from_version else "unset"
        console.print(f"{escape(ref)}: {before} -> v{event.to_version}")


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name")],
    version: Annotated[int, typer.Argument(help="Version to promote", min=1)],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to move")] = "champion",
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Held-out rows: NAME@vN")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target column of the dataset")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Metric compared with the holder")] = None,
    min_delta: Annotated[float, typer.Option("--min-delta", help="Required gain over the holder")] = 0.0,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="METRIC=VALUE bound, repeatable (e.g. roc_auc=0.8)"),
    ] = None,
    slice_by: Annotated[str | None, typer.Option("--slice-by", help="Column to compare slices on")] = None,
    max_slice_regression: Annotated[float | None, typer.Option("--max-slice-regression")] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", help="Per row")] = None,
    require_tag: Annotated[
        list[str] | None, typer.Option("--require-tag", help="Version tag that must be set")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Skip the gates (needs --reason; audited)")] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-m", help="Why (kept in the history)")] = None,
    json_output: JsonOption = False,
) -> None:
    """Move an alias to a version if it passes the gates; print each gate; exit 1 when refused."""
    from loopml import models
    from loopml.registry.gates import GatePolicy
    from loopml.registry.promotion import PromotionRefused

    policy = GatePolicy(
        metric=metric,
        min_delta=min_delta,
        thresholds=_thresholds(threshold or []),
        slice_by=slice_by,
        max_slice_regression=max_slice_regression,
        max_latency_ms_per_row=max_latency_ms,
        required_tags=tuple(require_tag or ()),
    )
    try:
        done = models.promote(
            name,
            version,
            alias=alias,
            policy=policy,
            dataset=dataset,
            target=target,
            force=force,
            reason=reason,
        )
    except PromotionRefused as refused:
        _print_gates(refused.gates, json_output)
        raise
    if json_output:
        print_json(
            {"event": done.event, "gates": [g.to_dict() for g in done.gates], "evaluation": done.evaluation}
        )
        return
    _print_gates(done.gates, json_output)
    before = f"v{done.event.from_version}" if done.event.from_version else "unset"
    forced = " (forced)" if done.event.forced else ""
    console.print(f"{escape(name)}@{escape(alias)}: {before} -> v{version}{forced}")


def _thresholds(pairs: list[str]) -> dict[str, float]:
    from loopml.core.errors import InvalidInput

    bounds: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            bounds[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise InvalidInput(f"a threshold is METRIC=NUMBER, got {pair!r}")
    return bounds


def _print_gates(gates: list[Any], json_output: bool) -> None:
    if json_output:
        print_json({"gates": [g.to_dict() for g in gates]})
        return
    for gate in gates:
        mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        console.print(f"  {mark}  {escape(gate.gate)}: {escape(gate.detail)}")


@app.command("compare")
def compare(
    name: Annotated[str, typer.Argument(help="Model name")],
    refs: Annotated[list[str], typer.Argument(help="Two or more aliases or versions: champion v3 ...")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Held-out rows: NAME@vN")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Target column of the dataset")] = None,
    slice_by: Annotated[
        str | None, typer.Option("--slice-by", help="Also score per value of a column")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Score versions of a model on the same held-out rows (the artifact serving loads), side by side."""
    from loopml import models

    scores = models.compare(name, *refs, dataset=dataset, target=target, slice_by=slice_by)
    if json_output:
        print_json(scores)
        return
    metrics = sorted({m for s in scores.values() for m in s.metrics})
    rows = [(metric, *(_number(s.metrics.get(metric)) for s in scores.values())) for metric in metrics]
    rows.append(("latency ms/row", *(_number(s.latency_ms_per_row) for s in scores.values())))
    for key in sorted({k for s in scores.values() for k in s.per_slice}):
        for metric in sorted({m for s in scores.values() for m in s.per_slice.get(key, {})}):
            rows.append(
                (
                    f"{metric} [{key}]",
                    *(_number(s.per_slice.get(key, {}).get(metric)) for s in scores.values()),
                )
            )
    table(f"{name}: {', '.join(refs)}", ["metric", *scores], rows)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Model name")],
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Only this alias")] = None,
    json_output: JsonOption = False,
) -> None:
    """Which version held each alias when: every move, removal and refused promotion, oldest first."""
    from loopml import models

    events = models.history(name, alias)
    if json_output:
        print_json(events)
        return
    rows = [
        (
            when(e.time),
            e.alias,
            f"v{e.from_version}" if e.from_version else "-",
            f"v{e.to_version}" if e.to_version else "-",
            e.outcome + (" (forced)" if e.forced and e.outcome == "moved" else ""),
            e.user,
            e.reason,
        )
        for e in events
    ]
    table(f"Alias history of {name}", ["when", "alias", "from", "to", "outcome", "by", "reason"], rows)


@app.command("trust")
def trust(ref: Annotated[str, typer.Argument(help="NAME@vN or NAME@ALIAS")]) -> None:
    """Mark a version trusted: loading it runs code (a pickled MLflow model, a python-flavor class), so
    serving, batch scoring and the gates refuse it until someone trusts it. Recorded with who and when."""
    from loopml import models

    version = models.trust(ref)
    console.print(f"{escape(version.ref)} trusted by {escape(version.trusted_by or '?')}")


@app.command("download")
def download(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@v3 or NAME@ALIAS")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the package into")] = Path(
        "."
    ),
) -> None:
    """Copy a version's package (manifest and model files, each verified) into a folder."""
    from loopml import models

    target = models.download(ref, output)
    console.print(f"{escape(ref)} -> {escape(str(target))}")


def _metrics(metrics: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:4])
    return shown + (" ..." if len(metrics) > 4 else "") if shown else "-"


def _range(column: dict[str, object]) -> str:
    low, high = column.get("minimum"), column.get("maximum")
    return "" if low is None else json.dumps([low, high])
