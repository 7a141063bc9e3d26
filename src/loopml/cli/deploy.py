"""`loopml deploy ...`: how models are deployed. `set` / `show` / `history` change and read the deployment
(champion, canary or shadow challenger, limits) that running servers follow; `export` writes a Docker build
context (and Kubernetes manifests) with the model baked in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.output import console, print_json, table, when

app = typer.Typer(
    help="Deploy models: canary and shadow rollouts that servers follow, Docker/Kubernetes exports.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]


@app.command("set")
def set_deployment(
    name: Annotated[str, typer.Argument(help="Model name")],
    champion: Annotated[str, typer.Option(help="Alias (or vN) that answers requests")] = "champion",
    challenger: Annotated[str | None, typer.Option(help="Alias (or vN) tried beside it")] = None,
    mode: Annotated[str, typer.Option(help="single | canary | shadow")] = "single",
    share: Annotated[
        float,
        typer.Option(
            help="canary: share of requests answered by the challenger; shadow: share mirrored to it (0 to 1)"
        ),
    ] = 0.0,
    sticky_key: Annotated[
        str | None, typer.Option(help="Request header whose value keeps a caller on one version")
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option(help="Challenger limit: share of failed requests")
    ] = None,
    max_p99_ms: Annotated[float | None, typer.Option(help="Challenger limit: p99 latency in ms")] = None,
    min_requests: Annotated[int | None, typer.Option(help="Requests seen before the limits apply")] = None,
    reason: Annotated[str | None, typer.Option("--reason", "-m", help="Why (kept in the history)")] = None,
    json_output: JsonOption = False,
) -> None:
    """Set how a model is served; running `loopml serve` processes follow within their poll interval."""
    from loopml import models

    limits = {
        key: value
        for key, value in (
            ("max_error_rate", max_error_rate),
            ("max_p99_ms", max_p99_ms),
            ("min_requests", min_requests),
        )
        if value is not None
    }
    deployment = models.deploy(
        name,
        champion=champion,
        challenger=challenger,
        mode=mode,
        share=share,
        sticky_key=sticky_key,
        limits=limits,
        reason=reason,
    )
    if json_output:
        print_json(deployment)
        return
    console.print(f"{name}: {_summary(deployment)} (revision {deployment.revision})")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Model name")], json_output: JsonOption = False) -> None:
    """How a model is served now, with the versions its aliases point at."""
    from loopml import models

    deployment = models.deployment(name)
    if json_output:
        print_json(deployment)
        return
    if deployment is None:
        console.print(f"{name}: no deployment; servers serve the reference they were started with")
        return
    champion = models.get(f"{name}@{deployment.champion}").version
    rows = [("champion", deployment.champion, f"v{champion}")]
    if deployment.challenger is not None:
        challenger = models.get(f"{name}@{deployment.challenger}").version
        rows.append(("challenger", deployment.challenger, f"v{challenger}"))
    table(f"{name}: {_summary(deployment)}", ["role", "reference", "version"], rows)
    if deployment.limits:
        console.print("limits: " + ", ".join(f"{k}={v:g}" for k, v in sorted(deployment.limits.items())))
    console.print(
        f"revision {deployment.revision}, by {deployment.updated_by or '-'} {when(deployment.updated_time)}"
    )


@app.command("history")
def history(name: Annotated[str, typer.Argument(help="Model name")], json_output: JsonOption = False) -> None:
    """Every change of a model's deployment: set by users, challengers taken out by servers (with why)."""
    from loopml import models

    events = models.deployment_history(name)
    if json_output:
        print_json(events)
        return
    rows = [
        (
            when(e.time),
            e.revision,
            e.kind,
            _summary_of(e.detail.get("deployment", {})),
            e.user or "-",
            e.detail.get("reason", ""),
        )
        for e in events
    ]
    table(f"Deployment history of {name}", ["when", "rev", "event", "deployment", "by", "reason"], rows)


def _summary(deployment: Any) -> str:
    return _summary_of(deployment.to_dict())


def _summary_of(d: dict[str, Any]) -> str:
    if d.get("mode", "single") == "single" or not d.get("challenger"):
        return f"single: {d.get('champion', '?')}"
    return f"{d['mode']} {d['share']:.0%} to {d['challenger']}, champion {d['champion']}"


@app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help="The model to serve: NAME@ALIAS, NAME@vN or NAME (latest)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the build context into")],
    target: Annotated[
        str, typer.Option("--target", "-t", help="docker, or kubernetes (docker context plus k8s/ manifests)")
    ] = "docker",
    image: Annotated[
        str | None,
        typer.Option("--image", help="Image name for the README and manifests (default loopml-NAME:vN)"),
    ] = None,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="Pods (and the autoscaler's minimum)")
    ] = 2,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port the server listens on")] = 8000,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an output folder that is not empty")
    ] = False,
    loopml_wheel: Annotated[
        Path | None,
        typer.Option(
            "--loopml-wheel", help="Bundle this LoopML wheel instead of installing loopml from PyPI"
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Write a Docker build context serving one model version (Kubernetes manifests too with -t kubernetes).

    The context holds a Dockerfile, pinned requirements and a LoopML project holding only that version.
    """
    from loopml.serving.export import export_deployment

    done = export_deployment(
        ref,
        output,
        target=target,
        image=image,
        replicas=replicas,
        port=port,
        force=force,
        loopml_wheel=loopml_wheel,
    )
    if json_output:
        print_json(
            {
                "directory": str(done.directory),
                "model": done.version.name,
                "version": done.version.version,
                "content_hash": done.version.content_hash,
                "serves": done.serve_ref,
                "image": done.image,
                "target": done.target,
                "files": done.files,
                "requirements": done.requirements,
            }
        )
        return
    typer.echo(f"Exported {done.serve_ref} ({done.version.ref}) for {done.target} into {done.directory}")
    typer.echo(f"  build: docker build -t {done.image} {done.directory}")
    if done.target == "kubernetes":
        typer.echo(f"  deploy: kubectl apply -f {done.directory / 'k8s'}")
