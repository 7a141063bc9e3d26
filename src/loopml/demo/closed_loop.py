"""`loopml demo` / `make demo`: the whole closed loop on built-in data, embedded stores, real processes.

1. Version a month of card transactions, train a fraud model with a cached pipeline, register and promote it.
2. Serve it (`loopml serve`, a real HTTP server) and run the controller (`loopml agent`) beside it.
3. Send traffic with labels coming back. Partway, customers change: amounts, merchants and countries shift,
   and fraud moves to small card-testing payments, so the inputs drift and the old model's accuracy falls.
4. Monitoring (one-minute windows, so the demo fits in two minutes) flags the drift and the accuracy drop;
   the controller retrains on the newest data, gates the challenger against the champion on the same
   held-out rows, canaries it on 30% of live traffic, compares both on labelled requests and promotes it.
5. Print the timeline, write the monitoring report, and stop every process it started.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from loopml.core.errors import InvalidInput

MODEL = "fraud"
DATASET = "transactions"
DAY_MS = 86_400_000
TRAINING_ROWS = 20_000
RATE_PER_S = 120  # requests per second the demo's client sends
DEADLINE_S = 170.0  # the loop must have closed by then

POLICY = """\
# The demo's loopml.toml: how the fraud model is monitored, retrained and rolled out.

[models.fraud.monitoring]
granularity = "minute"          # one-minute windows so the demo fits in two minutes (hour is the default)
grace_seconds = 3

[[models.fraud.monitoring.alerts]]
name = "input-drift"
metric = "drift.share"          # share of input columns that drifted from the training data
threshold = 0.5

[[models.fraud.monitoring.alerts]]
name = "auc-floor"
metric = "performance.roc_auc"  # realized on the labels that came back
threshold = 0.75
op = "<="
severity = "critical"

[models.fraud.automation]
pipeline = "loopml.demo.fraud_pipeline:train_fraud"
data = "transactions"           # retrain on its newest version
params = { n_estimators = 60 }

[models.fraud.automation.triggers]
drift = true                    # a drift alert of the model
alerts = ["auc-floor"]          # or this alert

[models.fraud.automation.rollout]
strategy = "canary"
share = 0.3                     # of live requests answered by the challenger
min_requests = 150
max_error_rate = 0.05           # enforced by the server itself: it cuts the challenger at once
max_p99_ms = 500
max_metric_drop = 0.05          # challenger vs champion accuracy on labelled canary traffic
"""


@dataclass
class Traffic:
    """A client sending transactions to the server at a steady rate, and their labels right after."""

    port: int
    drift: float = 0.0
    sent: int = 0
    failed: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from loopml.demo.fraud_data import FEATURES, TARGET, transactions

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        batch, seed = 0, 1000
        while not self.stop.is_set():
            frame = transactions(RATE_PER_S, seed=seed, drift=self.drift)
            seed += 1
            started = time.monotonic()
            labels = []
            for index, row in enumerate(frame[list(FEATURES)].to_dict("records")):
                pid = f"demo-{batch}-{index}"
                body = json.dumps({"records": [row], "prediction_ids": [pid]})
                answer = self._post(connection, f"/predict/{MODEL}", body)
                if answer is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    self.failed += 1
                    continue
                self.sent += 1
                version = answer.get("version", "?")
                self.by_version[version] = self.by_version.get(version, 0) + 1
                labels.append({"prediction_id": pid, "label": int(frame[TARGET].iloc[index])})
                if self.stop.is_set():
                    break
            if labels:  # in production labels come days later (chargebacks); here a moment later
                self._post(connection, "/feedback", json.dumps({"model": MODEL, "labels": labels}))
            batch += 1
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
        connection.close()

    @staticmethod
    def _post(connection: http.client.HTTPConnection, path: str, body: str) -> dict[str, Any] | None:
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            version = response.getheader("x-model-version")
        except (OSError, http.client.HTTPException):
            return None
        if response.status != 200:
            return None
        document: dict[str, Any] = json.loads(payload) if payload else {}
        if version is not None:
            document["version"] = f"v{version}"
        return document


def run_demo(folder: Path, *, console: Console | None = None) -> int:
    """Run the demo in `folder` (emptied first); returns a process exit code (0 when the loop closed)."""
    console = console or Console()
    _check_extras()
    started = time.monotonic()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "loopml.toml").write_text(POLICY)
    os.chdir(folder)
    import loopml

    loopml.configure(project_dir=folder)
    tracker = loopml.Client().tracker
    console.rule("[bold]LoopML closed-loop demo")
    console.print(f"project: {folder}  (embedded stores: SQLite + a local blob folder)\n")
    _train_first_champion(tracker, console)
    with _processes() as spawn:
        port = _free_port()
        cli = str(Path(sys.executable).parent / "loopml")
        spawn(
            [
                cli,
                "serve",
                f"{MODEL}@champion",
                "--port",
                str(port),
                "--poll-s",
                "0.5",
                "--log-segment-s",
                "2",
            ],
            "server.log",
        )
        _wait_ready(port)
        console.print(f"[green]✓[/] serving {MODEL}@champion on http://127.0.0.1:{port} (loopml serve)")
        spawn([cli, "agent", "--interval", "2"], "agent.log")
        console.print("[green]✓[/] controller running (loopml agent, a tick every 2 s)\n")
        closed = _drive(tracker, port, console, started)
    _epilogue(tracker, folder, console, started, closed)
    return 0 if closed else 1


def _train_first_champion(tracker: Any, console: Console) -> None:
    import loopml
    from loopml.demo.fraud_data import transactions
    from loopml.demo.fraud_pipeline import train_fraud

    now = int(time.time() * 1000)
    with console.status("versioning the data and training the first model..."):
        first = transactions(TRAINING_ROWS, seed=1, start_ms=now - 60 * DAY_MS, span_ms=30 * DAY_MS)
        added = loopml.datasets.add(DATASET, first, message="card transactions, last month", tracker=tracker)
        result = train_fraud.run({"n_estimators": 60}, tracker=tracker)
        loopml.models.promote(MODEL, 1, reason="first champion", tracker=tracker)
    auc = result.value["evaluation"]["metrics"]["roc_auc"]
    console.print(
        f"[green]✓[/] versioned {added.version.ref} ({TRAINING_ROWS:,} rows), trained {result.value['model']} "
        f"with a cached pipeline (ROC AUC {auc:.3f} on held-out rows), promoted it to champion"
    )


def _drive(tracker: Any, port: int, console: Console, started: float) -> bool:
    """Traffic, then the drift; print the loop's decisions as they happen, until it promoted or rolled back."""
    import loopml
    from loopml.automation.store import AutomationStore
    from loopml.demo.fraud_data import transactions

    traffic = Traffic(port)
    sender = threading.Thread(target=traffic.run, name="demo-traffic", daemon=True)
    sender.start()
    with console.status("normal traffic with labels coming back..."):
        time.sleep(5)
    console.print(f"[green]✓[/] {traffic.sent:,} predictions served, labels fed back")
    now = int(time.time() * 1000)
    fresh = transactions(TRAINING_ROWS, seed=2, drift=1.0, start_ms=now - DAY_MS, span_ms=DAY_MS)
    added = loopml.datasets.add(DATASET, fresh, message="card transactions, yesterday", tracker=tracker)
    traffic.drift = 1.0
    console.print(
        "[yellow]![/] customers change: bigger amounts, online merchants, more foreign cards, and fraud moves "
        f"to small card-testing payments; yesterday's labelled transactions landed as {added.version.ref}\n"
    )
    store = AutomationStore(tracker.stores.db)
    seen = 0
    closed = False
    try:
        with console.status("waiting for the monitoring window to close...") as status:
            while time.monotonic() - started < DEADLINE_S:
                for event in store.events(MODEL, after_id=seen):
                    seen = event.event_id or seen
                    console.print(_told(event))
                    closed = closed or event.kind in ("promoted", "rolled_back")
                if closed:
                    break
                status.update(
                    f"traffic: {traffic.sent:,} requests ({_split(traffic)}); the loop is watching..."
                )
                time.sleep(0.5)
    finally:
        traffic.stop.set()
        sender.join(timeout=10)
    console.print(f"\n[green]✓[/] {traffic.sent:,} requests served in all ({_split(traffic)})")
    if not closed:
        console.print(
            f"[red]✗ the loop did not close within {DEADLINE_S:.0f} s; see agent.log and server.log[/]"
        )
    return closed


def _epilogue(tracker: Any, folder: Path, console: Console, started: float, closed: bool) -> None:
    from loopml.monitoring.report import build_report

    report = build_report(tracker, MODEL, granularity="minute")
    report.to_html(folder / "report.html")
    console.rule("[bold]where to look")
    console.print(
        f"""cd {folder}         (`loopml` is {Path(sys.executable).parent / "loopml"})
  loopml ui                        # all of it in the browser: http://127.0.0.1:5050/ui/
  loopml timeline {MODEL}          # every decision of the loop, with its evidence
  loopml monitor windows {MODEL}   # drift, quality, latency, failed requests per window
  loopml models history {MODEL}    # alias moves and refusals, with gate results
  loopml deploy history {MODEL}    # the canary opened and closed
  loopml runs list                 # the training runs (the retrain is a pipeline run)
  report.html                      # the monitoring report (self-contained HTML)""",
        highlight=False,
    )
    verdict = "closed" if closed else "did NOT close"
    console.print(f"\nThe loop {verdict} in {time.monotonic() - started:.0f} s.")


def _told(event: Any) -> str:
    from rich.markup import escape

    colour = {"promoted": "green", "rolled_back": "red", "training_failed": "red", "refused": "yellow"}
    suffix = f" [dim](run {event.run_id})[/]" if event.run_id and event.kind == "trained" else ""
    return f"[{colour.get(event.kind, 'cyan')}]{event.kind:<17}[/] {escape(event.message)}{suffix}"


def _split(traffic: Traffic) -> str:
    return ", ".join(f"{v}: {n:,}" for v, n in sorted(traffic.by_version.items())) or "none yet"


@contextlib.contextmanager
def _processes() -> Iterator[Any]:
    """Start processes (output to log files in the project); every one is stopped on the way out."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(log_name, "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    try:
        yield spawn
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_ready(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise InvalidInput(f"the demo server did not become ready on port {port}; see server.log")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_extras() -> None:
    missing = []
    for module, extra in (("fastapi", "serve"), ("sklearn", "sklearn"), ("pyarrow", "monitoring")):
        try:
            __import__(module)
        except ImportError:
            missing.append(extra)
    if missing:
        raise InvalidInput(
            f"the demo needs the extras {', '.join(missing)}: pip install 'loopml[{','.join(missing)}]'"
        )
