"""The team server as a team runs it: `loopml server` on PostgreSQL with its blobs in S3 (`rclone serve s3`),
auth on, and two client processes with their own tokens sharing experiments, artifacts and models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from s3_server import S3Server

LOOPML = str(Path(sys.executable).parent / "loopml")

pytestmark = pytest.mark.postgres

WRITER = """
import json, sys
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
import loopml

rng = np.random.default_rng(0)
X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
y = (X["a"] > 0).astype(int)
with loopml.start_run(experiment="shared", name="from-ana") as run:
    run.log_params({"model": "logreg", "C": 1.0})
    for step in range(100):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    open("notes.txt", "w").write("trained on 300 rows")
    run.log_artifact("notes.txt")
    mv = loopml.models.register("fraud", LogisticRegression().fit(X, y), sample=X)
loopml.models.set_alias("fraud", "champion", mv.version.version, reason="first model")
print(json.dumps({"run_id": run.run_id, "version": mv.version.version}))
"""

READER = """
import json, sys
import numpy as np, pandas as pd
import loopml
from loopml import Client

client = Client()
runs = client.search_runs(filter="params.model = 'logreg'").runs
run = runs[0]
client.download_artifacts(run.run_id, "notes.txt", "got")
model = loopml.models.load("fraud@champion")
X = pd.DataFrame({"a": [-2.0, 2.0], "b": [0.0, 0.0]})
with loopml.start_run(experiment="shared", name="from-bob") as mine:
    mine.log_metric("checked", 1.0)
history = client.get_metric_history(run.run_id, "loss")
print(json.dumps({
    "run_id": run.run_id,
    "user": run.user,
    "notes": open("got/notes.txt").read(),
    "predictions": model.predict(X).tolist(),
    "points": len(history),
    "champion": loopml.models.get("fraud@champion").version,
    "created_by": loopml.models.get("fraud@champion").created_by,
    "mine": mine.run_id,
}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def team_server(
    tmp_path: Path, postgres_url: str, s3_server: S3Server, bucket: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """`loopml server` on PostgreSQL + S3 in its own process; yields its URL and a token per user."""
    folder = tmp_path / "server"
    folder.mkdir()
    env = {
        **os.environ,
        **s3_server.env(),
        "LOOPML_DATABASE_URL": postgres_url,
        "LOOPML_ARTIFACT_URL": f"s3://{bucket}/loopml",
        "LOOPML_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    env.pop("LOOPML_TRACKING_URI", None)

    def admin(*args: str) -> str:
        done = subprocess.run(
            [LOOPML, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    admin("db", "upgrade")
    tokens = {"ana": admin("server", "create-admin", "--name", "ana")}
    tokens["bob"] = admin("server", "user", "add", "bob", "--role", "editor")
    port = _free_port()
    log = folder / "server.log"
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [LOOPML, "server", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url, tokens
    finally:
        process.terminate()
        process.wait(timeout=30)
    logged = log.read_text()
    assert not any(token in logged for token in tokens.values())  # secrets are never logged


def _client(script: str, folder: Path, url: str, token: str) -> dict[str, object]:
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "AWS_"))}
    env |= {"LOOPML_TRACKING_URI": url, "LOOPML_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr  # secrets are never printed
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_two_clients_share_runs_artifacts_and_models_through_one_server_on_postgres_and_s3(
    team_server: tuple[str, dict[str, str]], tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    url, tokens = team_server
    wrote = _client(WRITER, tmp_path / "ana", url, tokens["ana"])
    read = _client(READER, tmp_path / "bob", url, tokens["bob"])
    assert read["run_id"] == wrote["run_id"]
    assert read["user"] == "ana"
    assert read["notes"] == "trained on 300 rows"
    assert read["predictions"] == [0, 1]
    assert read["points"] == 100
    assert (read["champion"], read["created_by"]) == (wrote["version"], "ana")
    # The blobs live in the bucket, not on the server's disk or the clients'.
    stored = [p for p in (s3_server.data_dir / bucket / "loopml").rglob("*") if p.is_file()]
    assert len(stored) >= 4  # the artifact, the model package's files and its tree
    assert not (tmp_path / "server" / ".loopml" / "blobs").exists()
    assert not (tmp_path / "ana" / ".loopml" / "blobs").exists()
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/api/v1/models").status_code == 401
    headers = {"Authorization": f"Bearer {tokens['bob']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as bob:
        runs = bob.post("/api/v1/runs/search", json={"filter": "attributes.run_name = 'from-bob'"}).json()
        assert [r["user"] for r in runs["runs"]] == ["bob"]
        assert bob.get("/api/v1/models/fraud/history").json()["events"][0]["user"] == "ana"
