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


def test_the_cli_manages_the_servers_models(team_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, tokens = team_server
    _client(WRITER, tmp_path / "ana", url, tokens["ana"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "AWS_"))}
    env |= {"LOOPML_TRACKING_URI": url, "LOOPML_TOKEN": tokens["bob"]}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOOPML, *args], cwd=tmp_path / "ana", env=env, capture_output=True, text=True, timeout=120
        )

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["aliases"]) for m in listed] == [("fraud", {"champion": 1})]
    shown = json.loads(cli("models", "show", "fraud@champion", "--json").stdout)
    assert shown["manifest"]["lineage"]["run_id"] == shown["version"]["run_id"]
    moved = cli("models", "alias", "fraud@staging", "1", "--reason", "smoke test")
    assert moved.returncode == 0, moved.stderr
    history = json.loads(cli("models", "history", "fraud", "--json").stdout)
    assert [(e["alias"], e["user"]) for e in history] == [("champion", "ana"), ("staging", "bob")]
    (tmp_path / "ana" / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    added = cli("data", "add", "rows", "rows.csv", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["version"]["user"] == "bob"
    assert [d["name"] for d in json.loads(cli("data", "list", "--json").stdout)] == ["rows"]
    unknown = cli("models", "show", "nope@v1")
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr
    assert "nope" in unknown.stderr
    env["LOOPML_TOKEN"] = "lml_" + "0" * 32 + "_" + "x" * 43
    refused = cli("models", "list")
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr


BIG = """
import json, os
import loopml
from loopml import Client
from loopml.core.hashing import hash_bytes
from loopml.tracking import remote

proxied = []  # blobs uploaded through the server (watched, not replaced)
through_server = remote.Http.upload
remote.Http.upload = lambda self, digest, content: (proxied.append(digest), through_server(self, digest, content))[1]
payload = os.urandom(9 * 2**20)
open("big.bin", "wb").write(payload)
with loopml.start_run(experiment="shared", name="big") as run:
    run.log_artifact("big.bin")
Client().download_artifacts(run.run_id, "big.bin", "back")
same = open("back/big.bin", "rb").read() == payload
print(json.dumps({"same": same, "proxied": hash_bytes(payload) in proxied}))
"""


def test_large_artifacts_go_straight_to_s3_with_presigned_urls_checked_by_the_server(
    team_server: tuple[str, dict[str, str]], tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    url, tokens = team_server
    assert _client(BIG, tmp_path / "ana", url, tokens["ana"]) == {"same": True, "proxied": False}
    headers = {"Authorization": f"Bearer {tokens['bob']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as bob:
        offer = bob.post("/api/v1/blobs/uploads", json={"size": 5}).json()
        assert offer["url"].startswith(s3_server.endpoint_url)
        assert httpx.put(offer["url"], content=b"12345").status_code == 200
        wrong = bob.post(f"/api/v1/blobs/uploads/{offer['upload_id']}/commit", json={"digest": "0" * 64})
        assert wrong.status_code == 400  # does not hash to that name: discarded
        assert "discarded" in wrong.json()["error"]
        again = bob.post(f"/api/v1/blobs/uploads/{offer['upload_id']}/commit", json={"digest": "0" * 64})
        assert again.status_code == 404
        assert bob.get(f"/api/v1/blobs/{'0' * 64}").status_code == 404  # nothing took that name
        short = bob.post("/api/v1/blobs/uploads", json={"size": 10}).json()
        assert httpx.put(short["url"], content=b"12345").status_code >= 400  # the size is signed
        for bad in ("../x", "0" * 31, "%2e%2e%2fetc"):
            answer = bob.post(f"/api/v1/blobs/uploads/{bad}/commit", json={"digest": "0" * 64})
            assert answer.status_code in (400, 404), bad
        assert bob.post("/api/v1/blobs/uploads", json={"size": -1}).status_code == 400
    staged = list((s3_server.data_dir / bucket / "loopml" / "incoming").glob("upload-*"))
    assert len(staged) <= 1  # only the never-completed 10-byte offer's key could exist
