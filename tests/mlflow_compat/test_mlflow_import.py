"""`loopml import mlflow`: what MLflow 3.17's own client wrote (an `mlruns` folder, and a real `mlflow server`)
is reproduced in LoopML exactly: runs by id with params, tags and every metric point, artifacts byte for byte,
logged models, registered versions with their files, tags and aliases, and models that predict as before.
The import is resumable (a second import copies nothing; an interrupted one ends like a clean one)."""

from __future__ import annotations

import base64
import hashlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

import loopml
from loopml.core.errors import InvalidInput, RemoteError, Unauthenticated
from loopml.core.settings import load_settings
from loopml.mlflow.importer import ImportProgress, ImportReport, import_mlflow
from loopml.mlflow.logged_models import LoggedModelStore
from loopml.mlflow.source_rest import RestSource, credentials_from_env
from loopml.registry.store import RegistryStore
from loopml.storage.metadata import schema as t
from loopml.tracking.tracker import Tracker
from mlflow_client import mlflow_server, run_client

# Client code run by MLflow's own Python (never imported here): two experiments, nested runs with params,
# multi-step metrics (NaN and ±inf too), tags, a deleted run, artifacts in sub-folders, two sklearn models
# logged (skops, MLflow 3's default) and registered with aliases and tags, and an MLflow 2-style version
# registered from a run's artifact folder. It reports what MLflow itself reads back, for the checks.
SCRIPT = """
import hashlib
import os
import tempfile

import mlflow
import numpy as np
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

client = MlflowClient()
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
y = np.array([0, 0, 0, 1, 1, 1])

mlflow.set_experiment("fraud")
client.set_experiment_tag(mlflow.get_experiment_by_name("fraud").experiment_id, "project", "risk")
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_params({"lr": 0.1, "depth": 3, "note": "a b/c"})
    for step, loss in enumerate([0.9, 0.5, 0.25]):
        mlflow.log_metric("loss", loss, step=step)
    mlflow.log_metric("loss", 0.2, step=2)
    mlflow.log_metric("odd", float("nan"), step=0)
    mlflow.log_metric("odd", float("inf"), step=1)
    mlflow.log_metric("odd", float("-inf"), step=2)
    mlflow.log_metric("eval/auc", 0.75)
    mlflow.set_tags({"team": "risk", "data/source": "s3"})
    mlflow.log_text("hello", "notes.txt")
    mlflow.log_dict({"a": 1}, "cfg/deep/config.json")
    mlflow.log_text("x" * 100_000, "cfg/big.txt")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_param("C", "1.0")
        model = LogisticRegression().fit(X, y)
        first = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="fraud-model", input_example=X[:2]
        )
        weak = LogisticRegression(C=0.01).fit(X, y)
        second = mlflow.sklearn.log_model(weak, name="model2", registered_model_name="fraud-model")
        with tempfile.TemporaryDirectory() as folder:
            mlflow.sklearn.save_model(model, os.path.join(folder, "saved"))
            mlflow.log_artifacts(os.path.join(folder, "saved"), "legacy_model")
        mlflow.register_model(f"runs:/{child.info.run_id}/legacy_model", "legacy-model")
mlflow.set_experiment("other")
with mlflow.start_run(run_name="gone") as gone:
    mlflow.log_metric("m", 1.0)
client.delete_run(gone.info.run_id)
client.set_registered_model_alias("fraud-model", "champion", "1")
client.set_registered_model_alias("fraud-model", "challenger", "2")
client.set_registered_model_tag("fraud-model", "owner", "risk-team")
client.set_model_version_tag("fraud-model", "1", "validated", "true")
client.update_registered_model("fraud-model", description="fraud classifier")
client.update_model_version("fraud-model", "2", description="weaker")


def files(**where):
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        root = mlflow.artifacts.download_artifacts(dst_path=folder, **where)
        for parent_dir, _, names in os.walk(root):
            for name in names:
                path = os.path.join(parent_dir, name)
                with open(path, "rb") as stream:
                    data = stream.read()
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                found[relative] = [len(data), hashlib.sha256(data).hexdigest()]
    found.pop("registered_model_meta", None)  # written by the download itself
    return found


experiments = client.search_experiments(view_type=ViewType.ALL)
ids = [e.experiment_id for e in experiments]
runs = {}
for run in client.search_runs(ids, run_view_type=ViewType.ALL):
    info = run.info
    runs[info.run_id] = {
        "experiment": client.get_experiment(info.experiment_id).name,
        "name": info.run_name,
        "status": info.status,
        "start": info.start_time,
        "end": info.end_time,
        "lifecycle": info.lifecycle_stage,
        "user": info.user_id,
        "params": run.data.params,
        "tags": run.data.tags,
        "metrics": {
            key: [[m.value, m.step, m.timestamp] for m in client.get_metric_history(info.run_id, key)]
            for key in run.data.metrics
        },
        "artifacts": files(run_id=info.run_id, artifact_path=""),
    }
logged = {}
for found in client.search_logged_models(ids):
    logged[found.model_id] = {
        "name": found.name,
        "experiment": client.get_experiment(found.experiment_id).name,
        "run": found.source_run_id,
        "status": str(found.status),
        "params": found.params,
        "tags": found.tags,
        "files": files(artifact_uri=f"models:/{found.model_id}"),
    }
versions = {}
for name in ("fraud-model", "legacy-model"):
    for v in client.search_model_versions(f"name='{name}'"):
        versions[f"{name}@v{v.version}"] = {
            "run": v.run_id, "source": v.source, "tags": v.tags, "description": v.description
        }
registered = client.get_registered_model("fraud-model")
report({
    "runs": runs,
    "logged": logged,
    "versions": versions,
    "experiments": {e.name: {"lifecycle": e.lifecycle_stage, "tags": e.tags} for e in experiments},
    "first": first.model_id,
    "second": second.model_id,
    "model": {"aliases": registered.aliases, "tags": registered.tags, "description": registered.description},
    "X": X.tolist(),
    "champion": model.predict(X).tolist(),
    "challenger": weak.predict(X).tolist(),
})
"""
FILE_STORE = {"MLFLOW_ALLOW_FILE_STORE": "true"}  # MLflow 3.17 keeps the file store only on request


@pytest.fixture(scope="module")
def mlruns(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A real `mlruns` folder written by MLflow's client, and what MLflow reads back from it."""
    folder = tmp_path_factory.mktemp("mlflow") / "mlruns"
    return folder, run_client(SCRIPT, tracking_uri=f"file:{folder}", env=FILE_STORE)


def fresh(folder: Path) -> Tracker:
    return Tracker(load_settings(project_dir=folder))


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Tracker]:
    """A second project, for an import to compare with."""
    opened = fresh(tmp_path / "other")
    yield opened
    opened.close()


def sha(tracker: Tracker, digest: str) -> str:
    return hashlib.sha256(tracker.blobs.get_bytes(digest)).hexdigest()


def point(value: float, step: int, timestamp: int) -> tuple[str, int, int]:
    return (repr(value) if math.isfinite(value) else str(value).lower(), step, timestamp)


def check_reproduced(tracker: Tracker, expected: dict[str, Any]) -> None:
    """LoopML holds what MLflow read back: every run, logged model, version, alias and tag, exactly."""
    store, db = tracker.store, tracker.stores.db
    with db.read() as conn:
        experiment_tags = {
            (name, key): value
            for name, key, value in conn.execute(
                select(t.experiments.c.name, t.experiment_tags.c.key, t.experiment_tags.c.value).join(
                    t.experiments, t.experiments.c.experiment_id == t.experiment_tags.c.experiment_id
                )
            )
        }
    names = {}
    for name, want in expected["experiments"].items():
        found = store.find_experiment(name)
        assert found is not None, name
        names[found.experiment_id] = name
        assert found.lifecycle.value == want["lifecycle"]
        assert {k: v for (n, k), v in experiment_tags.items() if n == name} == want["tags"]
    for run_id, want in expected["runs"].items():
        run = store.get_run(run_id)
        assert names[run.experiment_id] == want["experiment"]
        assert (run.name, run.status.value, run.start_time, run.end_time, run.lifecycle.value) == (
            want["name"],
            want["status"],
            want["start"],
            want["end"],
            want["lifecycle"],
        )
        assert run.user == want["user"]
        assert run.params == want["params"]
        assert run.tags == want["tags"]
        assert run.parent_run_id == want["tags"].get("mlflow.parentRunId")
        assert set(store.metric_keys(run_id)) == set(want["metrics"])
        for key, points in want["metrics"].items():
            history = store.metrics.history(run_id, key)
            assert sorted(point(m.value, m.step, m.timestamp) for m in history) == sorted(
                point(*p) for p in points
            ), key
        artifacts = store.attachments.list_artifacts(run_id)
        assert {a.path: [a.size, sha(tracker, a.digest)] for a in artifacts} == want["artifacts"]
    logged = LoggedModelStore(db)
    for model_id, want in expected["logged"].items():
        model = logged.get(model_id)
        assert (model.name, names[model.experiment_id], model.source_run_id, model.status) == (
            want["name"],
            want["experiment"],
            want["run"],
            want["status"],
        )
        assert (model.params, model.tags) == (want["params"], want["tags"])
        assert {f.path: [f.size, sha(tracker, f.digest)] for f in logged.files(model_id)} == want["files"]
    registry = RegistryStore(db)
    for ref, want in expected["versions"].items():
        version = registry.get_version(ref)
        assert version.flavor == "mlflow"
        assert (version.run_id, version.source_uri, version.tags) == (
            want["run"],
            want["source"],
            want["tags"],
        )
        assert version.description == (want["description"] or None)
    assert registry.get_version("fraud-model@v1").logged_model_id == expected["first"]
    assert registry.get_version("fraud-model@v2").logged_model_id == expected["second"]
    model = registry.get_model("fraud-model")
    assert model.aliases == {alias: int(number) for alias, number in expected["model"]["aliases"].items()}
    assert (model.tags, model.description) == (expected["model"]["tags"], expected["model"]["description"])
    rows = np.array(expected["X"])
    for alias in ("champion", "challenger"):
        predicted = loopml.models.load(f"fraud-model@{alias}", tracker=tracker).predict(rows)
        assert predicted.tolist() == expected[alias]
    assert (
        loopml.models.load("legacy-model@v1", tracker=tracker).predict(rows).tolist() == expected["champion"]
    )


def counts(report: ImportReport) -> dict[str, int]:
    fields = ("experiments", "runs", "logged_models", "registered_models", "model_versions", "aliases")
    return {name: getattr(report, name) for name in fields}


EXPECTED_COUNTS = {
    "experiments": 3,  # Default, fraud, other
    "runs": 3,
    "logged_models": 2,
    "registered_models": 2,
    "model_versions": 3,
    "aliases": 2,
}


def snapshot(tracker: Tracker) -> dict[str, list[Any]]:
    """What an import wrote, independent of LoopML's own ids and of when the import ran."""
    e, r, lm = t.experiments.c, t.runs.c, t.latest_metrics.c
    models, versions = t.registered_models.c, t.model_versions.c
    queries = {
        "experiments": select(e.name, e.lifecycle, e.description, e.created_time),
        "experiment_tags": select(e.name, t.experiment_tags.c.key, t.experiment_tags.c.value).join(
            t.experiments, e.experiment_id == t.experiment_tags.c.experiment_id
        ),
        "runs": select(
            r.run_id,
            e.name,
            r.name,
            r.status,
            r.start_time,
            r.end_time,
            r.lifecycle,
            r.parent_run_id,
            r.user_name,
        ).join(t.experiments, e.experiment_id == r.experiment_id),
        "params": select(t.params.c.run_id, t.params.c.key, t.params.c.value, t.params.c.value_json),
        "tags": select(t.tags.c.run_id, t.tags.c.key, t.tags.c.value),
        "metrics": select(lm.run_id, lm.key, t.metrics.c.value, t.metrics.c.step, t.metrics.c.timestamp).join(
            t.latest_metrics, lm.series_id == t.metrics.c.series_id
        ),
        "latest": select(lm.run_id, lm.key, lm.value, lm.step, lm.timestamp),
        "artifacts": select(
            t.artifacts.c.run_id, t.artifacts.c.path, t.artifacts.c.digest, t.artifacts.c.size
        ),
        "logged_models": select(
            t.logged_models.c.model_id,
            t.logged_models.c.name,
            t.logged_models.c.status,
            t.logged_models.c.source_run_id,
            t.logged_models.c.created_time,
            t.logged_models.c.tags_json,
            t.logged_models.c.params_json,
        ),
        "logged_model_files": select(
            t.logged_model_files.c.model_id,
            t.logged_model_files.c.path,
            t.logged_model_files.c.digest,
            t.logged_model_files.c.size,
        ),
        "models": select(models.name, models.description, models.created_time),
        "model_tags": select(models.name, t.model_tags.c.key, t.model_tags.c.value).join(
            t.registered_models, models.model_id == t.model_tags.c.model_id
        ),
        "versions": select(
            models.name,
            versions.version,
            versions.content_hash,
            versions.run_id,
            versions.source_uri,
            versions.logged_model_id,
            versions.description,
            versions.created_time,
        ).join(t.registered_models, models.model_id == versions.model_id),
        "aliases": select(models.name, t.model_aliases.c.alias, versions.version)
        .join(t.registered_models, models.model_id == t.model_aliases.c.model_id)
        .join(t.model_versions, versions.version_id == t.model_aliases.c.version_id),
    }
    with tracker.stores.db.read() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(query)), key=repr)
            for name, query in queries.items()
        }


def test_import_reproduces_the_mlruns_folder(mlruns: tuple[Path, dict[str, Any]], tracker: Tracker) -> None:
    folder, expected = mlruns
    report = import_mlflow(tracker, str(folder))
    assert report.refused == []
    assert counts(report) == EXPECTED_COUNTS
    runs = expected["runs"].values()
    assert report.metric_points == sum(len(p) for run in runs for p in run["metrics"].values())
    assert report.params == sum(len(run["params"]) for run in runs)
    assert report.tags == sum(len(run["tags"]) for run in runs)
    files = [*[f for run in runs for f in run["artifacts"].values()]]
    files += [f for model in expected["logged"].values() for f in model["files"].values()]
    assert (report.artifacts, report.artifact_bytes) == (len(files), sum(size for size, _ in files))
    check_reproduced(tracker, expected)
    assert "Imported 3 experiments, 3 runs" in report.summary()


def test_a_second_import_copies_nothing(mlruns: tuple[Path, dict[str, Any]], sqlite_tracker: Tracker) -> None:
    folder, _ = mlruns
    first = import_mlflow(sqlite_tracker, folder.as_uri())  # a file:// URI names the same source
    before = snapshot(sqlite_tracker)
    again = import_mlflow(sqlite_tracker, str(folder))
    assert counts(again) == dict.fromkeys(EXPECTED_COUNTS, 0)
    assert (again.metric_points, again.artifacts) == (0, 0)
    assert again.skipped == {
        "experiment": 3,
        "run": 3,
        "logged model": 2,
        "registered model": 2,
        "model version": 3,
        "alias": 2,
    }
    assert counts(first) == EXPECTED_COUNTS
    assert snapshot(sqlite_tracker) == before
    assert "skipped as already imported: 2 aliases, 3 experiments, 2 logged models" in again.summary()


class Interrupted(Exception):
    pass


@pytest.mark.parametrize(
    ("stage", "after"),
    [("runs", 0), ("runs", 2), ("logged models", 1), ("model versions", 1), ("model versions", 3)],
)
def test_an_interrupted_import_resumes_to_the_same_end(
    mlruns: tuple[Path, dict[str, Any]], sqlite_tracker: Tracker, other: Tracker, stage: str, after: int
) -> None:
    folder, expected = mlruns

    def stop(step: ImportProgress) -> None:
        if (step.stage, step.done) == (stage, after):
            raise Interrupted

    with pytest.raises(Interrupted):
        import_mlflow(sqlite_tracker, str(folder), progress=stop)
    resumed = import_mlflow(sqlite_tracker, str(folder))
    assert resumed.refused == []
    if stage == "runs":
        assert (resumed.skipped.get("run", 0), resumed.runs) == (after, 3 - after)
    import_mlflow(other, str(folder))
    assert snapshot(sqlite_tracker) == snapshot(other)
    check_reproduced(sqlite_tracker, expected)


def moved_copy(folder: Path, target: Path) -> Path:
    """The folder as if it had been written at /gone/mlruns and moved since (its recorded paths are stale)."""
    shutil.copytree(folder, target)
    for meta in target.rglob("meta.yaml"):
        meta.write_text(meta.read_text().replace(str(folder), "/gone/mlruns"))
    return target


def test_a_moved_folder_is_read_where_it_is(
    mlruns: tuple[Path, dict[str, Any]], sqlite_tracker: Tracker, other: Tracker, tmp_path: Path
) -> None:
    folder, expected = mlruns
    moved = moved_copy(folder, tmp_path / "copy")
    report = import_mlflow(sqlite_tracker, str(moved))
    assert (report.refused, report.notes) == ([], [])
    import_mlflow(other, str(folder))
    here, there = snapshot(sqlite_tracker), snapshot(other)
    for kind in ("runs", "params", "tags", "metrics", "artifacts", "logged_model_files", "aliases"):
        assert here[kind] == there[kind], kind
    strip = [(name, number, content) for name, number, content, *_ in here["versions"]]
    assert strip == [(name, number, content) for name, number, content, *_ in there["versions"]]
    check_reproduced(sqlite_tracker, {**expected, "versions": {}})


def test_runs_from_another_source_with_the_same_ids_are_refused(
    mlruns: tuple[Path, dict[str, Any]], sqlite_tracker: Tracker, tmp_path: Path
) -> None:
    folder, expected = mlruns
    import_mlflow(sqlite_tracker, str(folder))
    before = snapshot(sqlite_tracker)
    report = import_mlflow(sqlite_tracker, str(moved_copy(folder, tmp_path / "copy")))
    refused = sorted(report.refused)
    assert len(refused) == 5  # 2 logged models, 3 runs
    assert all("with this id, not from this source" in line for line in refused)
    assert sorted(line.split(":")[0] for line in refused if line.startswith("run ")) == sorted(
        f"run {run_id}" for run_id in expected["runs"]
    )
    assert report.runs == report.logged_models == 0
    assert report.model_versions == 3  # the same files: mapped to the versions imported before
    assert any("has the files of fraud-model@v1" in note for note in report.notes)
    after = snapshot(sqlite_tracker)
    for kind in ("runs", "params", "metrics", "artifacts", "versions", "aliases"):
        assert after[kind] == before[kind], kind


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


RUN_ID = "0123456789abcdef0123456789abcdef"


def handmade(root: Path) -> Path:
    """A minimal file store as MLflow lays it out, with what MLflow would rarely write."""
    write(
        root / "7" / "meta.yaml", f"experiment_id: '7'\nname: crafted\nartifact_location: file://{root}/7\n"
    )
    run = root / "7" / RUN_ID
    meta = (
        f"run_id: {RUN_ID}\nrun_name: r\nstatus: 1\nstart_time: 5\nend_time: null\nlifecycle_stage: active\n"
    )
    write(run / "meta.yaml", meta + f"artifact_uri: file://{root}/7/{RUN_ID}/artifacts\n")
    write(run / "params" / "p", "v")
    write(run / "metrics" / "m", "100 1.5 7 train abc123\n200 nan 8\n\n300 -inf\n")
    write(run / "artifacts" / "kept.txt", "kept")
    (run / "artifacts" / "secret").symlink_to("/etc/hostname")
    other = root / "7" / ("f" * 32)
    write(
        other / "meta.yaml",
        f"run_id: {'f' * 32}\nstatus: 3\nstart_time: 1\nend_time: 2\nartifact_uri: s3://b/x\n",
    )
    write(root / "7" / ("e" * 32) / "meta.yaml", "run_id: somebody-else\n")
    return root


def test_folder_edge_cases(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    report = import_mlflow(sqlite_tracker, str(handmade(tmp_path / "mlruns")))
    assert report.refused == []
    assert report.runs == 2
    store = sqlite_tracker.store
    run = store.get_run(RUN_ID)
    assert (run.status.value, run.end_time, run.params) == ("RUNNING", None, {"p": "v"})
    history = [point(m.value, m.step, m.timestamp) for m in store.metrics.history(RUN_ID, "m")]
    assert history == [point(-math.inf, 0, 300), point(1.5, 7, 100), point(math.nan, 8, 200)]
    assert [a.path for a in store.attachments.list_artifacts(RUN_ID)] == ["kept.txt"]  # no link followed
    assert store.get_run("f" * 32).name == "run-ffffffff"
    assert any("s3://b/x" in note and "files not imported" in note for note in report.notes)
    assert any("names run 'somebody-else'" in note for note in report.notes)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tmp}/missing", "no such folder"),
        ("{tmp}", "is not an MLflow file store"),
        ("s3://bucket/mlruns", "give an mlruns folder"),
        ("http://127.0.0.1:1", "cannot reach the MLflow server"),
    ],
)
def test_bad_sources_are_refused(sqlite_tracker: Tracker, tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        import_mlflow(sqlite_tracker, source.format(tmp=tmp_path))


def test_a_real_mlflow_server_is_imported_through_its_rest_api(
    tmp_path: Path, sqlite_tracker: Tracker
) -> None:
    with mlflow_server(tmp_path / "server") as url:
        expected = run_client(SCRIPT, tracking_uri=url)
        report = import_mlflow(sqlite_tracker, url + "/")
        assert report.refused == []
        assert counts(report) == EXPECTED_COUNTS
        check_reproduced(sqlite_tracker, expected)
        again = import_mlflow(sqlite_tracker, url)
    assert counts(again) == dict.fromkeys(EXPECTED_COUNTS, 0)
    assert again.skipped["run"] == 3


# -- the REST source's edges, against a fake server (httpx's mock transport) --------------------------------


def fake_mlflow(files: dict[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    """An MLflow 2 server with one experiment and one run whose artifact listing is `files`."""
    run = {
        "info": {
            "run_id": RUN_ID,
            "experiment_id": "1",
            "status": "FINISHED",
            "start_time": 1,
            "end_time": 2,
        },
        "data": {"metrics": [{"key": "m", "value": "NaN", "timestamp": 3, "step": 0}]},
    }
    answers: dict[str, Any] = {
        "/api/2.0/mlflow/experiments/search": {"experiments": [{"experiment_id": "1", "name": "e"}]},
        "/api/2.0/mlflow/runs/search": {"runs": [run]},
        "/api/2.0/mlflow/metrics/get-history": {"metrics": [{"key": "m", "value": "NaN", "timestamp": 3}]},
        "/api/2.0/mlflow/artifacts/list": files,
        "/api/2.0/mlflow/registered-models/search": {},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("Authorization") == "Bearer wrong":
            return httpx.Response(401, json={"message": "no"})
        if request.url.path == "/get-artifact":
            return httpx.Response(200, content=b"abc")
        found = answers.get(request.url.path)
        return (
            httpx.Response(404, json={"message": "no such endpoint"})
            if found is None
            else httpx.Response(200, json=found)
        )

    return httpx.MockTransport(answer)


def test_rest_credentials_and_an_mlflow_2_server(sqlite_tracker: Tracker) -> None:
    seen: list[httpx.Request] = []
    listing = {"files": [{"path": "a.txt", "is_dir": False, "file_size": 3}]}
    source = RestSource("http://mlflow.test", token="secret", transport=fake_mlflow(listing, seen))
    report = import_mlflow(sqlite_tracker, source)
    assert (report.runs, report.artifacts, report.refused) == (1, 1, [])
    assert any("no logged models" in note for note in report.notes)
    assert {r.headers["Authorization"] for r in seen} == {"Bearer secret"}
    history = sqlite_tracker.store.metrics.history(RUN_ID, "m")
    assert math.isnan(history[0].value)
    [artifact] = sqlite_tracker.store.attachments.list_artifacts(RUN_ID)
    assert sqlite_tracker.blobs.get_bytes(artifact.digest) == b"abc"

    seen.clear()
    RestSource("http://mlflow.test", username="ann", password="pw", transport=fake_mlflow(listing, seen))
    assert seen[0].headers["Authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()
    with pytest.raises(Unauthenticated, match="MLFLOW_TRACKING_TOKEN"):
        RestSource("http://mlflow.test", token="wrong", transport=fake_mlflow(listing, seen))
    assert credentials_from_env({"MLFLOW_TRACKING_TOKEN": "t"}) == {
        "token": "t",
        "username": None,
        "password": None,
    }


def test_rest_paths_that_would_escape_are_refused(sqlite_tracker: Tracker) -> None:
    listing = {"files": [{"path": "../../etc/passwd", "is_dir": False, "file_size": 3}]}
    source = RestSource("http://mlflow.test", transport=fake_mlflow(listing, []))
    report = import_mlflow(sqlite_tracker, source)
    assert report.runs == 0
    [refused] = report.refused
    assert refused.startswith(f"run {RUN_ID}:")
    assert "leaves the folder" in refused
    assert sqlite_tracker.store.count_runs() == 0


def test_a_download_cut_short_stops_the_import(sqlite_tracker: Tracker) -> None:
    listing = {"files": [{"path": "a.txt", "is_dir": False, "file_size": 10}]}
    source = RestSource("http://mlflow.test", transport=fake_mlflow(listing, []))
    with pytest.raises(RemoteError, match="sent 3 bytes of 10"):
        import_mlflow(sqlite_tracker, source)
    assert sqlite_tracker.store.count_runs() == 0
