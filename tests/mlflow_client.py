"""The unmodified MLflow client (and a real MLflow server) for tests, from their own venv.

MLflow is never a dependency of LoopML: `make test` installs it into `.venv-mlflow` from
`requirements/mlflow.lock`, and tests drive it as a subprocess. `run_client` runs a snippet of client code
against a tracking URI and returns what the snippet passed to `report(...)`; `mlflow_server` starts a real
`mlflow server` on 127.0.0.1, so the same snippets can first be checked against MLflow itself.
Without the venv the tests are skipped, except under `CI=true`, where they must run and fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from loopml.tracking.tracker import Tracker
from team_server import free_port

REPO = Path(__file__).resolve().parent.parent
MARKER = "@@loopml-mlflow-report@@"
MISSING = "the MLflow venv is missing (make .venv-mlflow/.installed, or set LOOPML_MLFLOW_PYTHON)"

# Defined before every snippet: `report(obj)` hands `obj` (JSON) back to the test; `error_code(fn, ...)` is the
# `MlflowException.error_code` that `fn(...)` raised (None when it did not raise).
PRELUDE = f"""\
import json as _json
import sys as _sys


def report(obj):
    _sys.stdout.write("\\n{MARKER}" + _json.dumps(obj) + "\\n")
    _sys.stdout.flush()


def error_code(fn, *args, **kwargs):
    from mlflow.exceptions import MlflowException

    try:
        fn(*args, **kwargs)
    except MlflowException as error:
        return error.error_code
    return None


"""

# Fail fast (no retries with backoff), make no calls home, and draw figures without a display.
CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
}
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _skip_or_fail(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the MLflow compatibility tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def mlflow_python() -> Path:
    """The Python of the MLflow venv: `$LOOPML_MLFLOW_PYTHON`, else `.venv-mlflow/bin/python` of the repo."""
    configured = os.environ.get("LOOPML_MLFLOW_PYTHON")
    python = Path(configured) if configured else REPO / ".venv-mlflow" / "bin" / "python"
    if not python.exists():
        _skip_or_fail(f"{MISSING}: {python} not found")
    return python


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without proxies or MLflow settings of its own, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in PROXY_VARS and not key.startswith("MLFLOW_")
    }
    return env | extra


def _tail(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def run_client(
    script: str, *, tracking_uri: str, env: dict[str, str] | None = None, timeout: float = 180
) -> Any:
    """Run `script` (client code; dedented here) with the MLflow venv's Python against `tracking_uri`.

    It runs in a fresh temporary directory with `MLFLOW_TRACKING_URI` set, plus `env` (credentials, say).
    Returns the object the script passed to `report(...)` (the last one, if several); raises AssertionError
    with the output's tail when the script fails or reports nothing."""
    python = mlflow_python()
    with tempfile.TemporaryDirectory(prefix="loopml-mlflow-client-") as folder:
        path = Path(folder) / "client_script.py"
        path.write_text(PRELUDE + textwrap.dedent(script))
        variables = _clean_env(CLIENT_ENV | {"MLFLOW_TRACKING_URI": tracking_uri} | (env or {}))
        try:
            done = subprocess.run(
                [str(python), path.name],
                cwd=folder,
                env=variables,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            out = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else error.stdout
            err = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
            raise AssertionError(
                f"the MLflow client script timed out after {timeout} s\n"
                f"--- stdout\n{_tail(out or '')}\n--- stderr\n{_tail(err or '')}"
            ) from None
    output = f"--- stdout\n{_tail(done.stdout)}\n--- stderr\n{_tail(done.stderr)}"
    if done.returncode != 0:
        raise AssertionError(f"the MLflow client script failed (exit {done.returncode})\n{output}")
    reports = [line[len(MARKER) :] for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not reports:
        raise AssertionError(f"the MLflow client script reported nothing\n{output}")
    return json.loads(reports[-1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server and every process it started (its own process group): politely, then for sure, since a
    child that outlives the server (a uvicorn worker, a job consumer) would keep running after the tests."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@contextlib.contextmanager
def mlflow_server(folder: Path, *, start_timeout: float = 120) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 until the block ends; yields its base URL.

    SQLite metadata in `folder/mlflow.db`, artifacts proxied by the server (`mlflow-artifacts:`) into
    `folder/artifacts`, one worker, no background job runner; its output goes to `folder/server.log`."""
    python = mlflow_python()
    folder.mkdir(parents=True, exist_ok=True)
    env = _clean_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"})
    log_path = folder / "server.log"
    for attempt in range(3):  # the free port can be taken between choosing and binding it
        port = free_port()
        argv = [
            str(python), "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + start_timeout
            while process.poll() is None and time.monotonic() < deadline and not _healthy(url):
                time.sleep(0.2)
            if process.poll() is None and _healthy(url):
                yield url
                return
            if process.poll() is None or attempt == 2:
                log_text = log_path.read_text(errors="replace")
                pytest.fail(f"mlflow server did not start on {url}:\n{_tail(log_text)}", pytrace=False)
        finally:
            _stop(process)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Target:
    """A tracking server for the MLflow client: its URL, the client's credentials and, for LoopML, its
    tracker (to read back what was stored)."""

    kind: str  # "mlflow" or "loopml"
    url: str
    env: dict[str, str] = field(default_factory=dict)
    tracker: Tracker | None = None
    token: str | None = None

    def run(self, script: str, *, env: dict[str, str] | None = None, timeout: float = 180) -> Any:
        """Run MLflow client code against this server (see `mlflow_client.run_client`)."""
        return run_client(script, tracking_uri=self.url, env=self.env | (env or {}), timeout=timeout)

    @property
    def loopml(self) -> Tracker:
        """The LoopML tracker behind the server (only for target "loopml")."""
        assert self.tracker is not None, "only the LoopML target has a tracker"
        return self.tracker
