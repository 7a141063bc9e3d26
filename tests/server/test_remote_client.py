"""The Python tracking API against a team server (`LOOPML_TRACKING_URI`): the same calls, the same results as
on the local project, data that is ordinary LoopML data on the server, and one-line errors for what is not
served over HTTP yet."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import loopml
from loopml.core.errors import InvalidInput, NotFound, Unauthenticated
from loopml.core.settings import load_settings
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker


def _exercise(tracker: Tracker) -> dict[str, object]:
    """A training script's tracking calls; returns what reading them back gives."""
    with loopml.start_run(experiment="fraud", name="rf", tags={"team": "risk"}, tracker=tracker) as run:
        run.log_params({"model": {"kind": "rf", "depth": 8}, "lr": 0.1})
        for step in range(50):
            run.log_metric("auc", 0.5 + step / 100, step=step)
        run.log_metric("loss", math.nan, step=0)
        run.set_tag("stage", "dev")
        run_id = run.run_id
    client = Client(tracker)
    found = client.search_runs(filter="metrics.auc > 0.9 and params.model.kind = 'rf'").runs
    read = client.get_run(run_id)
    history = client.get_metric_history(run_id, "auc")
    return {
        "found": run_id in [r.run_id for r in found],
        "params": read.params,
        "tags": {k: v for k, v in read.tags.items() if not k.startswith("loopml.")},
        "latest": read.metrics["auc"],
        "nan": math.isnan(read.metrics["loss"]),
        "status": read.status.value,
        "steps": [m.step for m in history],
        "experiments": [e.name for e in client.list_experiments() if e.name == "fraud"],
    }


def test_the_same_calls_give_the_same_results_locally_and_through_the_server(
    remote: Tracker, tracker: Tracker
) -> None:
    assert _exercise(remote) == _exercise(tracker)
    on_server = Client(tracker).search_runs(filter="params.lr = 0.1").runs
    assert len(on_server) == 2
    assert {r.user for r in on_server} >= {"ana"}  # the remote run records its token's user


def test_what_is_not_served_yet_and_bad_credentials_fail_in_one_line(
    server: str, remote: Tracker, tmp_path: Path
) -> None:
    with loopml.start_run(experiment="e", tracker=remote) as run:
        run.log_input("transactions", "v3", context="training")  # lineage goes through the server too
    assert [i.dataset for i in Client(remote).list_inputs(run.run_id)] == ["transactions"]
    assert Client(remote).gc(dry_run=True).dry_run  # the server's gc, for its admins
    with pytest.raises(InvalidInput, match="not available against a team server yet"):
        remote.stores.db  # noqa: B018 - the local database is not opened against a server
    assert [v.version for v in loopml.models.versions("fraud", tracker=remote)] == [1]  # served since
    with pytest.raises(NotFound):
        Client(remote).get_run("0" * 32)
    stranger = Tracker(load_settings(project_dir=tmp_path, tracking_uri=server, token="lml_nope"))
    try:
        with pytest.raises(Unauthenticated):
            Client(stranger).list_experiments()
    finally:
        stranger.close()


def test_artifacts_logged_through_the_server_come_back_byte_for_byte(
    remote: Tracker, tracker: Tracker, tmp_path: Path
) -> None:
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "roc.bin").write_bytes(bytes(range(256)) * 4000)  # ~1 MB, streamed
    (folder / "notes.md").write_text("# notes")
    with loopml.start_run(experiment="e", tracker=remote) as run:
        run.log_text("hello", "summary.txt")
        run.log_artifacts(folder, "plots")
        run_id = run.run_id
    client = Client(remote)
    assert sorted(a.path for a in client.list_artifacts(run_id)) == [
        "plots/notes.md",
        "plots/roc.bin",
        "summary.txt",
    ]
    out = client.download_artifacts(run_id, "plots", tmp_path / "back")
    assert (out / "roc.bin").read_bytes() == (folder / "roc.bin").read_bytes()
    local = Client(tracker)  # the server's own view: ordinary artifacts in its blob store
    assert local.download_artifacts(run_id, "summary.txt", tmp_path / "local").read_text() == "hello"


def test_the_cli_lists_and_shows_runs_from_the_server(remote: Tracker, server: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    with loopml.start_run(experiment="cli", name="from-afar", tracker=remote) as run:
        run.log_metric("auc", 0.91)
        run_id = run.run_id
    token = remote.settings.token.get_secret_value() if remote.settings.token else ""
    env = {**os.environ, "LOOPML_TRACKING_URI": server, "LOOPML_TOKEN": token}
    env.pop("LOOPML_PROJECT_DIR", None)
    loopml_cli = str(Path(sys.executable).parent / "loopml")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [loopml_cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    listed = cli("runs", "list", "--filter", "metrics.auc > 0.9", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)["runs"]] == [run_id]
    shown = cli("runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["name"] == "from-afar"
    refused = subprocess.run(
        [loopml_cli, "runs", "list"],
        cwd=tmp_path,
        env={**env, "LOOPML_TOKEN": "lml_bad"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "bearer token" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_large_flush_is_sent_in_batches_the_server_takes(remote: Tracker, tracker: Tracker) -> None:
    with loopml.start_run(experiment="big", tracker=remote) as run:
        run.log_metrics({f"layer_{i}/gradient_norm_with_a_long_name": 0.5 for i in range(10)}, step=0)
        for step in range(45_000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    assert len(Client(tracker).get_metric_history(run.run_id, "loss")) == 45_000
