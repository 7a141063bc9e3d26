"""`loopml serve MODEL[@ALIAS] ...`: the model server (uvicorn running `loopml.serving.app.create_app`)."""

from __future__ import annotations

import os
import threading
from typing import Annotated

import typer

from loopml.core.errors import InvalidInput


def serve(
    models: Annotated[list[str], typer.Argument(help="NAME@ALIAS, NAME@vN or NAME (latest), one or more")],
    host: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 only inside a container)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 8000,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Predictions running at once")] = 4,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests waiting beyond those (then 503)")] = 256,
    timeout_s: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a prediction answers 504")
    ] = 30.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body (then 413)")] = 16.0,
    poll_s: Annotated[float, typer.Option(min=0, help="Seconds between alias checks (0: never)")] = 2.0,
    unseen_levels: Annotated[str, typer.Option(help="pass | reject categories training never saw")] = "pass",
    out_of_range: Annotated[
        str, typer.Option(help="pass | reject numbers outside the training range")
    ] = "pass",
    nulls: Annotated[
        str, typer.Option(help="signature (nulls where training saw them) | pass (any column may be null)")
    ] = "signature",
    batch: Annotated[
        list[str] | None,
        typer.Option(
            help="Micro-batch a model: NAME:MAX_BATCH_SIZE:MAX_WAIT_MS (e.g. fraud:64:2), repeatable"
        ),
    ] = None,
    redact: Annotated[
        list[str] | None, typer.Option(help="Input column left out of the prediction log, repeatable")
    ] = None,
    hash_column: Annotated[
        list[str] | None, typer.Option("--hash", help="Input column logged as a keyed digest, repeatable")
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the prediction log")] = False,
    log_segment_s: Annotated[
        float, typer.Option(min=0.1, help="Seconds before an open prediction log segment is written")
    ] = 60.0,
    agent: Annotated[
        bool,
        typer.Option("--agent", help="Also run the automation controller (`loopml agent`) in this process"),
    ] = False,
    agent_interval: Annotated[float, typer.Option(min=1, help="Seconds between the agent's ticks")] = 60.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve models over HTTP: Open Inference Protocol V2, MLflow's /invocations, /predict, /metrics.

    API keys: set LOOPML_API_KEYS to a comma-separated list to require one on every route but health.
    """
    import uvicorn

    from loopml.serving.app import create_app
    from loopml.serving.batching import BatchPolicy
    from loopml.serving.predictor import ValidationPolicy
    from loopml.serving.server import ServeOptions

    keys = tuple(k.strip() for k in os.environ.get("LOOPML_API_KEYS", "").split(",") if k.strip())
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise InvalidInput(f"--log-level must be critical, error, warning, info or debug, not {log_level!r}")
    options = ServeOptions(
        max_body_bytes=int(max_body_mb * 2**20),
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        timeout_s=timeout_s,
        poll_s=poll_s,
        api_keys=keys,
        policy=ValidationPolicy(unseen_levels=unseen_levels, out_of_range=out_of_range, nulls=nulls),
        batching=dict(BatchPolicy.parse(text) for text in batch or ()),
        log_predictions=not no_log,
        redact=tuple(redact or ()),
        hash_columns=tuple(hash_column or ()),
        log_segment_s=log_segment_s,
    )
    app = create_app(models, options=options)
    stop = _start_agent(agent_interval) if agent else None
    typer.echo(f"serving {', '.join(models)} on http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        uvicorn.run(
            app, host=host, port=port, log_level=log_level, access_log=False, http="httptools", loop="uvloop"
        )
    finally:
        if stop is not None:
            stop.set()


def _start_agent(interval_s: float) -> threading.Event:
    """The automation controller on a daemon thread beside the server; set the event to stop it."""
    from loopml.automation.controller import Controller
    from loopml.tracking.tracker import default_tracker

    controller = Controller(default_tracker())  # policies are checked now: a bad one stops the server start
    stop = threading.Event()
    threading.Thread(
        target=controller.run_forever,
        kwargs={"interval_s": interval_s, "stop": stop},
        name="loopml-agent",
        daemon=True,
    ).start()
    typer.echo(
        f"agent: {', '.join(controller.policies) or 'no policies'}, a tick every {interval_s:g} s", err=True
    )
    return stop
