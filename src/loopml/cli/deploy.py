"""`loopml deploy ...`: how models are deployed. `export` writes a Docker build context (and Kubernetes
manifests) with the model baked in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli.output import print_json

app = typer.Typer(help="Deploy models: export Docker/Kubernetes build contexts.", no_args_is_help=True)


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
