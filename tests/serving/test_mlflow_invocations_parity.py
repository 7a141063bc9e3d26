"""MLflow's scoring clients get the same answers from `loopml serve` as from `mlflow models serve`.

The unmodified MLflow client (its own venv, a subprocess) logs a scikit-learn classifier to the LoopML team
server and registers it; then the same model is served twice, by LoopML's serving (uvicorn in a thread over
the same project) and by `mlflow models serve -m models:/parity@candidate`, which downloads it from the LoopML
server. MLflow's own scoring client code (`ScoringServerClient.invoke`, `dump_input_data`, the model's
`serving_input_example.json`) and plain `requests` posts in every MLflow input format go to both
`/invocations`, and the answers must be the same JSON. A second model, saved with cloudpickle, is refused by
LoopML's serving without being unpickled until someone trusts the version; then it answers as MLflow does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import loopml
from loopml.core.settings import load_settings
from loopml.registry.loading import package_folder
from loopml.registry.skops_io import UntrustedArtifact
from loopml.registry.store import RegistryStore
from loopml.serving.app import create_app
from loopml.serving.server import ServeOptions
from loopml.tracking.tracker import Tracker
from mlflow_client import CLIENT_ENV, PROXY_VARS, mlflow_python, run_client
from team_server import free_port, serving, serving_app

MODEL = "parity"
PICKLED = "parity-pickle"
EXAMPLE_CASE = "serving_input_example.json"
START_TIMEOUT_S = 180  # `mlflow models serve` imports MLflow and downloads the model first

# The client script: a classifier on named float columns, logged with skops (MLflow's default) and registered
# as `parity` (alias `candidate`), and a subclass of it saved with cloudpickle as `parity-pickle`. The subclass
# appends the unpickling process's id to a file, so the test sees whether LoopML ever unpickled it.
TRAIN = """
import os

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["amount", "age_years", "balance", "score"])
y = (X["amount"] + 0.5 * X["balance"] > 0).astype(int) + (X["score"] > 1).astype(int)  # classes 0, 1, 2
rows = pd.DataFrame(rng.normal(size=(12, 4)) * 2, columns=X.columns)  # unseen rows, some far out of range


CANARY_FILE = os.environ["CANARY_FILE"]  # cloudpickle stores the class by value, with this path


class Canary(LogisticRegression):
    def __setstate__(self, state):
        with open(CANARY_FILE, "a") as stream:
            stream.write(f"{os.getpid()}\\n")
        super().__setstate__(state)


mlflow.set_experiment("parity")
with mlflow.start_run():
    model = LogisticRegression(max_iter=500).fit(X, y)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X[:3], registered_model_name="parity")
    pickled = Canary(max_iter=500).fit(X, y)
    mlflow.sklearn.log_model(
        pickled,
        name="pickled",
        input_example=X[:3],
        serialization_format="cloudpickle",
        registered_model_name="parity-pickle",
    )
client = MlflowClient()
client.set_registered_model_alias("parity", "candidate", "1")
report({
    "rows": rows.to_dict(orient="split"),
    "expected": model.predict(rows).tolist(),
    "example_expected": model.predict(X[:3]).tolist(),
    "version": client.get_model_version_by_alias("parity", "candidate").version,
})
"""

# The scoring script (after SERVERS, ROWS, EXAMPLE_CASE and EXAMPLE are defined): each request in MLflow's
# formats, made by MLflow's own client code or by `requests`, sent to every server. It reports
# {"accepted" | "refused": {case: {server: [status, body]}}}; for refused ones, the MLflow keys of the body.
SCORE = """
import json
from urllib.parse import urlsplit

import pandas as pd
import requests
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.utils.proto_json_utils import dump_input_data

frame = pd.DataFrame(**{key: ROWS[key] for key in ("columns", "data")})
records = frame.to_dict(orient="records")
reordered = frame[frame.columns[::-1]]
whole = frame.round().astype(int)  # integers in float columns
JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
accepted = {
    "dump_input_data(frame)": (dump_input_data(frame), JSON),
    "dump_input_data(frame, params)": (dump_input_data(frame, params={"unused": 1}), JSON),
    "dataframe_split": (json.dumps({"dataframe_split": frame.to_dict(orient="split")}), JSON),
    "dataframe_split without index": (
        json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}),
        JSON,
    ),
    "dataframe_split, columns reordered": (
        json.dumps({"dataframe_split": reordered.to_dict(orient="split")}), JSON
    ),
    "dataframe_records": (json.dumps({"dataframe_records": records}), JSON),
    "dataframe_records, whole numbers": (
        json.dumps({"dataframe_records": whole.to_dict(orient="records")}), JSON
    ),
    "instances as records": (json.dumps({"instances": records}), JSON),
    "instances as columns": (json.dumps({"instances": frame.to_dict(orient="list")}), JSON),
    "instances with params": (json.dumps({"instances": records, "params": {}}), JSON),
    "inputs as columns": (json.dumps({"inputs": frame.to_dict(orient="list")}), JSON),
    "inputs as records": (json.dumps({"inputs": records}), JSON),
    "text/csv": (frame.to_csv(index=False), CSV),
    "text/csv; charset=utf-8": (frame.to_csv(index=False), {"Content-Type": "text/csv; charset=utf-8"}),
    "text/csv, columns reordered": (reordered.to_csv(index=False), CSV),
    "text/csv, whole numbers": (whole.to_csv(index=False), CSV),
    EXAMPLE_CASE: (EXAMPLE, JSON),
}
missing = frame.drop(columns=[frame.columns[-1]]).to_dict(orient="records")
refused = {
    "two format keys": (json.dumps({"dataframe_records": records, "instances": records}), JSON),
    "no format key": (json.dumps({"columns": list(frame.columns)}), JSON),
    "a list, not an object": (json.dumps(records), JSON),
    "not JSON": ("{", JSON),
    "dataframe_records as one object": (json.dumps({"dataframe_records": records[0]}), JSON),
    "no rows": (json.dumps({"dataframe_records": []}), JSON),
    "a column missing": (json.dumps({"dataframe_records": missing}), JSON),
    "a string in a float column": (json.dumps({"dataframe_records": [dict(records[0], amount="x")]}), JSON),
    "a null in a float column": (json.dumps({"dataframe_records": [dict(records[0], amount=None)]}), JSON),
    "empty CSV": ("", CSV),
    "text/plain": (json.dumps({"dataframe_records": records}), {"Content-Type": "text/plain"}),
}


def post(url, body, headers):
    response = requests.post(f"{url}/invocations", data=body, headers=headers, timeout=60)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


answers = {"accepted": {case: {} for case in ["ScoringServerClient.invoke(frame)", *accepted]}, "refused": {}}
for name, url in SERVERS.items():
    parts = urlsplit(url)
    client = ScoringServerClient(parts.hostname, parts.port)
    client.wait_server_ready(timeout=30)
    answers["accepted"]["ScoringServerClient.invoke(frame)"][name] = [200, dict(client.invoke(frame))]
    for case, (body, headers) in accepted.items():
        answers["accepted"][case][name] = list(post(url, body, headers))
    for case, (body, headers) in refused.items():
        status, payload = post(url, body, headers)
        # What a client can rely on in an error: the status, and MLflow's error_code and message keys.
        keys = sorted({"error_code", "message"} & set(payload)) if isinstance(payload, dict) else ["text"]
        answers["refused"].setdefault(case, {})[name] = [status, " ".join(keys)]
report(answers)
"""


@dataclass(frozen=True)
class Logged:
    """The project the MLflow client logged to, the team server over it and what the client reported."""

    folder: Path
    tracker: Tracker
    url: str
    env: dict[str, str]
    rows: dict[str, Any]
    expected: list[int]
    example_expected: list[int]
    canary: Path

    def expected_answer(self, case: str) -> dict[str, Any]:
        """What MLflow's scoring server answers for `case` (the model's own example holds other rows)."""
        return {"predictions": self.example_expected if case == EXAMPLE_CASE else self.expected}

    def unpicklers(self) -> list[int]:
        """The ids of the processes that unpickled the cloudpickle model so far."""
        text = self.canary.read_text() if self.canary.exists() else ""
        return [int(line) for line in text.split()]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """A fresh project behind a team server, with both models logged by the MLflow client."""
    from loopml.server.accounts import AccountStore

    mlflow_python()  # skip (or fail under CI=true) before starting anything when the MLflow venv is missing
    folder = tmp_path_factory.mktemp("parity-project")
    canary = tmp_path_factory.mktemp("canary") / "unpickled-by"
    tracker = Tracker(load_settings(project_dir=folder))
    try:
        token = AccountStore(tracker.stores.db).create_admin("ana")
        with serving(tracker) as url:
            env = {"MLFLOW_TRACKING_TOKEN": token, "CANARY_FILE": str(canary)}
            got = run_client(TRAIN, tracking_uri=url, env=env, timeout=300)
            assert got["version"] == "1"
            rows, expected, example_expected = got["rows"], got["expected"], got["example_expected"]
            yield Logged(folder, tracker, url, env, rows, expected, example_expected, canary)
    finally:
        tracker.close()


def test_invocations_answer_like_mlflow_models_serve(logged: Logged, tmp_path: Path) -> None:
    version = RegistryStore(logged.tracker.stores.db).get_version(f"{MODEL}@candidate")
    assert version.flavor == "mlflow"
    with (
        loopml_serving(logged, f"{MODEL}@candidate") as loopml_url,
        mlflow_models_serve(logged, f"models:/{MODEL}@candidate", tmp_path) as mlflow_url,
    ):
        answers = score(logged, f"{MODEL}@candidate", {"mlflow": mlflow_url, "loopml": loopml_url})
    assert_same_answers(logged, answers)


def test_a_cloudpickle_model_is_served_only_once_trusted(logged: Logged, tmp_path: Path) -> None:
    ref = f"{PICKLED}@v1"
    version = RegistryStore(logged.tracker.stores.db).get_version(ref)
    assert version.flavor == "mlflow"
    assert version.trusted_by is None
    unpicklers = logged.unpicklers()  # MLflow's client may have loaded it back when it logged it
    # Refused before anything is unpickled: by the Python API and by `loopml serve`, with a message that says
    # how to allow it.
    with pytest.raises(UntrustedArtifact, match="loopml models trust"), loopml_serving(logged, ref):
        pass
    cli = loopml_serve_cli(logged, ref)
    assert cli.returncode != 0
    assert "loopml models trust" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert logged.unpicklers() == unpicklers
    assert os.getpid() not in unpicklers

    trusted = loopml.models.trust(ref, tracker=logged.tracker)
    assert trusted.trusted_by
    with (
        loopml_serving(logged, ref) as loopml_url,
        mlflow_models_serve(logged, f"models:/{PICKLED}/1", tmp_path) as mlflow_url,
    ):
        answers = score(logged, ref, {"mlflow": mlflow_url, "loopml": loopml_url})
    assert os.getpid() in logged.unpicklers()
    assert_same_answers(logged, answers)


# --- helpers -------------------------------------------------------------------------------------------------


def assert_same_answers(logged: Logged, answers: dict[str, dict[str, dict[str, list[Any]]]]) -> None:
    """MLflow answers every accepted case with the model's predictions (checked against MLflow itself, so the
    cases are its formats), and LoopML answers each exactly as MLflow did: status and JSON body. What MLflow
    refuses, LoopML refuses with the same status (and MLflow's error_code and message keys in JSON)."""
    accepted = answers["accepted"]
    mlflow = {case: by_server["mlflow"] for case, by_server in accepted.items()}
    assert mlflow == {case: [200, logged.expected_answer(case)] for case in accepted}
    assert {case: by_server["loopml"] for case, by_server in accepted.items()} == mlflow
    refused = answers["refused"]
    mlflow_status = {case: by_server["mlflow"][0] for case, by_server in refused.items()}
    assert all(400 <= status < 500 for status in mlflow_status.values()), refused
    assert {case: by_server["loopml"][0] for case, by_server in refused.items()} == mlflow_status
    # MLflow answers a wrong content type in plain text; LoopML answers every error in JSON with its keys.
    loopml_keys = {case: by_server["loopml"][1] for case, by_server in refused.items()}
    assert loopml_keys == dict.fromkeys(refused, "error_code message")


def score(logged: Logged, ref: str, servers: dict[str, str]) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """The answers of `servers` to every request of the scoring script (see SCORE)."""
    values = {
        "SERVERS": servers,
        "ROWS": logged.rows,
        "EXAMPLE_CASE": EXAMPLE_CASE,
        "EXAMPLE": _serving_example(logged, ref),
    }
    script = "".join(f"{name} = {value!r}\n" for name, value in values.items()) + SCORE
    answers: dict[str, dict[str, dict[str, list[Any]]]] = run_client(
        script, tracking_uri=logged.url, env=logged.env
    )
    return answers


def _serving_example(logged: Logged, ref: str) -> str:
    """The `serving_input_example.json` MLflow wrote beside the model, as LoopML stored it."""
    version = RegistryStore(logged.tracker.stores.db).get_version(ref)
    return (package_folder(logged.tracker, version) / "model" / "serving_input_example.json").read_text()


@contextlib.contextmanager
def loopml_serving(logged: Logged, ref: str) -> Iterator[str]:
    """LoopML's model server for `ref` (uvicorn in a thread) over the project, as `loopml serve` builds it."""
    tracker = Tracker(load_settings(project_dir=logged.folder))  # its own, as another process would have
    try:
        app = create_app([ref], tracker=tracker, options=ServeOptions(poll_s=0, log_predictions=False))
        with serving_app(app) as url:
            yield url
    finally:
        tracker.close()


def loopml_serve_cli(logged: Logged, ref: str) -> subprocess.CompletedProcess[str]:
    """`loopml serve REF` as a process over the project (expected to stop on its own: it refuses the model)."""
    loopml_cli = Path(sys.executable).parent / "loopml"
    env = _env({"LOOPML_PROJECT_DIR": str(logged.folder)})
    argv = [str(loopml_cli), "serve", ref, "--host", "127.0.0.1", "--port", str(free_port())]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def mlflow_models_serve(logged: Logged, model_uri: str, folder: Path) -> Iterator[str]:
    """`mlflow models serve -m MODEL_URI --env-manager local` on 127.0.0.1, fetching the model from the LoopML
    server; its output goes to `folder/mlflow-serve.log`."""
    python = mlflow_python()
    port = free_port()
    argv = [
        str(python), "-m", "mlflow", "models", "serve",
        "-m", model_uri,
        "--env-manager", "local",
        "-h", "127.0.0.1",
        "-p", str(port),
    ]  # fmt: skip
    env = _env(CLIENT_ENV | logged.env | {"MLFLOW_TRACKING_URI": logged.url})
    # MLflow starts its scoring server as `uvicorn ...` from PATH: the MLflow venv's, not ours.
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "mlflow-serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _pings(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not start:\n{log_path.read_text()[-6000:]}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(process)


def _env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without proxies or MLflow settings, plus `extra`."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in PROXY_VARS and not key.startswith(("MLFLOW_", "LOOPML_"))
    }
    return kept | extra


def _pings(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the server and the workers it started (its own process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
