"""`loopml ui`: the web UI over the local project, for one person on this machine (no sign-in)."""

from __future__ import annotations

from typing import Annotated

import typer

from loopml.core.errors import InvalidInput


def ui(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 5050,
    host: Annotated[
        str,
        typer.Option(help="Address to bind: 127.0.0.1 (the UI has no sign-in; use `loopml server` to share)"),
    ] = "127.0.0.1",
) -> None:
    """Browse the local project's experiments, data, models, deployments, monitoring and the loop."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        # Without sign-in, anyone who reaches the port could read everything: the team server is for sharing.
        raise InvalidInput("`loopml ui` binds to this machine only; run `loopml server` to share the UI")
    import uvicorn

    from loopml.server.ui.app import local_ui_app
    from loopml.tracking.tracker import default_tracker

    tracker = default_tracker()
    if tracker.remote:
        raise InvalidInput("`loopml ui` shows a local project; a team server serves its own UI at /ui/")
    app_ = local_ui_app(tracker, hosts=("127.0.0.1", "localhost", "::1"))
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"LoopML UI on http://{shown}:{port}/ui/ (Ctrl-C to stop)", err=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)
