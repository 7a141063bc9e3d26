"""`loopml agent ...`: the automation controller. `loopml agent` runs the loop until stopped; `tick` runs one
evaluation and exits (for cron, a Kubernetes CronJob or Airflow); `trigger` asks for a retrain; `status`
shows where each loop stands; `export` writes the schedule for an external scheduler. `loopml timeline MODEL`
tells what the loop decided and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.output import console, print_json, table, when

app = typer.Typer(
    help="Continuous training: retrain on schedule, new data or drift; gate; canary; promote or roll back.",
    invoke_without_command=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Only this model (repeatable; default: every policy)"),
]


@app.callback()
def agent(
    ctx: typer.Context,
    model: ModelOption = None,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between ticks")] = 60.0,
) -> None:
    """Run the controller until stopped (Ctrl-C): a tick every --interval seconds."""
    if ctx.invoked_subcommand is not None:
        return
    import signal
    import threading

    from loopml.automation.controller import Controller
    from loopml.tracking.tracker import default_tracker

    controller = Controller(default_tracker(), models=model)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(
        f"loopml agent: {', '.join(controller.policies) or 'no policies'}; a tick every {interval:g} s (Ctrl-C stops)"
    )
    try:
        controller.run_forever(interval_s=interval, stop=stop)
    except KeyboardInterrupt:
        stop.set()


@app.command("tick")
def tick(model: ModelOption = None, json_output: JsonOption = False) -> None:
    """Evaluate every model's loop once and exit (exit code 1 when a training failed or a loop hit an error)."""
    from loopml.automation.controller import Controller
    from loopml.tracking.tracker import default_tracker

    outcomes = Controller(default_tracker(), models=model).tick()
    if json_output:
        print_json(outcomes)
    else:
        table(
            "loopml agent tick",
            ["model", "action", "phase", "what happened"],
            [(o.model, o.action, o.phase, o.message) for o in outcomes],
        )
    if any(o.action in ("failed", "error") for o in outcomes):
        raise typer.Exit(1)


@app.command("trigger")
def trigger(
    model: Annotated[str, typer.Argument(help="Model whose loop retrains at its next tick")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the timeline)")] = "asked for",
) -> None:
    """Ask for a retrain of MODEL at the loop's next tick (guards do not hold a manual request back)."""
    import time

    from loopml.automation.policy import policy_of
    from loopml.automation.triggers import request_manual
    from loopml.registry.promoter import current_user
    from loopml.tracking.tracker import default_tracker

    tracker = default_tracker()
    policy_of(tracker.settings.project_dir, model)  # a model without a policy would never act on it
    request = request_manual(
        tracker, model, reason=reason, actor=current_user(), now_ms=int(time.time() * 1000)
    )
    console.print(f"retrain of {model} requested (request {request}); `loopml agent tick` acts on it")


@app.command("status")
def status(json_output: JsonOption = False) -> None:
    """Where each model's loop stands."""
    from loopml.automation.policy import policies
    from loopml.automation.store import AutomationStore
    from loopml.tracking.tracker import default_tracker

    tracker = default_tracker()
    store = AutomationStore(tracker.stores.db)
    found = {name: store.state(name) for name in policies(tracker.settings.project_dir)}
    if json_output:
        print_json(found)
        return
    rows = []
    for name, state in found.items():
        fired = ((state.trigger or {}).get("fired") or [{}])[0].get("reason", "-")
        rows.append((name, state.phase, f"v{state.candidate}" if state.candidate else "-", fired))
    table("automation loops", ["model", "phase", "candidate", "last trigger"], rows)


@app.command("export")
def export(
    target: Annotated[str, typer.Option("--target", "-t", help="cron | kubernetes | airflow")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write into")] = Path("."),
    model: ModelOption = None,
    every: Annotated[int, typer.Option(help="Minutes between ticks of each model")] = 5,
    image: Annotated[str | None, typer.Option(help="Container image with loopml (kubernetes)")] = None,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace")] = "default",
    project_dir: Annotated[
        Path | None,
        typer.Option(
            help="The project folder where the tick runs (default: this one; in an image: its path)"
        ),
    ] = None,
) -> None:
    """Write the schedule for an external scheduler that calls `loopml agent tick`."""
    import shlex
    import shutil

    from loopml.automation.export import export_schedule
    from loopml.automation.policy import policies
    from loopml.tracking.tracker import default_tracker

    project = default_tracker().settings.project_dir
    names = model or sorted(policies(project))
    # cron runs with a short PATH: name this loopml by its full path (inside an image, `loopml` is on PATH).
    found = shutil.which("loopml") if target != "kubernetes" else None
    files = export_schedule(
        target,
        models=names,
        project_dir=project_dir or project,
        every_minutes=every,
        image=image,
        namespace=namespace,
        command=shlex.quote(found) if found else "loopml",
    )
    output.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = output / name
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(content)
        temporary.replace(path)
        console.print(f"wrote {path}")


def timeline(
    model: Annotated[str, typer.Argument(help="Registered model name")],
    limit: Annotated[int, typer.Option(min=1, help="Newest events shown")] = 50,
    json_output: JsonOption = False,
) -> None:
    """What the model's automation loop decided, and why: triggers, retrains, gates, rollouts, outcomes."""
    from loopml.automation.store import AutomationStore
    from loopml.tracking.tracker import default_tracker

    events = AutomationStore(default_tracker().stores.db).events(model)[-limit:]
    if json_output:
        print_json(events)
        return
    if not events:
        console.print(f"{model}: nothing happened yet (no automation events)")
        return
    for event in events:
        console.print(_line(event), highlight=False, soft_wrap=True)


def _line(event: Any) -> str:
    from rich.markup import escape

    links = []
    if event.run_id:
        links.append(f"run {event.run_id}")
    if event.version:
        links.append(f"{event.model}@v{event.version}")
    suffix = f"  [dim]({', '.join(links)})[/]" if links else ""
    colour = {"promoted": "green", "rolled_back": "red", "training_failed": "red", "refused": "yellow"}.get(
        event.kind, "cyan"
    )
    return f"{when(event.time)}  [{colour}]{event.kind:<17}[/] {escape(event.message)}{suffix}"
