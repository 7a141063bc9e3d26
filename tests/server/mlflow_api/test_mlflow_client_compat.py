"""The unmodified `mlflow` client against a real MLflow server and against LoopML's team server.

Each test runs one client script (several operations) and asserts on what the client reads back; every
assertion holds against MLflow 3.17.2 itself, so it describes MLflow's behaviour, not our guess of it. Against
LoopML the tests also read what LoopML stored through its own Python API.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from loopml.registry.store import RegistryStore
from loopml.tracking.client import Client
from mlflow_client import Target, run_client


def test_runs_params_metrics_tags_and_deletion(target: Target) -> None:
    got = target.run(
        """
        import time

        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag, ViewType

        client = MlflowClient()
        experiment_id = mlflow.set_experiment("compat-tracking").experiment_id
        with mlflow.start_run(run_name="parent") as parent:
            mlflow.log_param("lr", 0.1)
            mlflow.log_params({"depth": 3, "optimizer": "adam"})
            for step, loss in enumerate([1.0, 0.5, 0.25]):
                mlflow.log_metric("loss", loss, step=step)
            mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
            mlflow.set_tag("team", "a")
            mlflow.set_tags({"stage": "dev", "owner": "ana"})
            pending = mlflow.log_metric("throughput", 10.0, step=0, synchronous=False)
            pending.wait()
            for step in (1, 2):
                mlflow.log_metric("throughput", 10.0 + step, step=step, synchronous=False)
            mlflow.flush_async_logging()
            with mlflow.start_run(run_name="child", nested=True) as child:
                mlflow.log_param("fold", "1")
        with mlflow.start_run() as unnamed:
            pass
        now = int(time.time() * 1000)
        client.log_batch(
            parent.info.run_id,
            metrics=[Metric("batch", 1.5, now, 0), Metric("batch", 2.5, now + 1, 1)],
            params=[Param("batch_param", "x")],
            tags=[RunTag("batch_tag", "y")],
        )

        def run_view(run_id):
            run = client.get_run(run_id)
            return {
                "info": {key: value for key, value in run.info},
                "params": run.data.params,
                "metrics": run.data.metrics,
                "tags": run.data.tags,
            }

        def history(key):
            return [[m.value, m.step, m.timestamp] for m in client.get_metric_history(parent.info.run_id, key)]

        before_delete = run_view(child.info.run_id)
        client.delete_run(child.info.run_id)

        def names(view_type):
            return sorted(r.info.run_name for r in client.search_runs([experiment_id], run_view_type=view_type))

        report({
            "experiment_id": experiment_id,
            "parent": run_view(parent.info.run_id),
            "child": before_delete,
            "unnamed": run_view(unnamed.info.run_id),
            "fluent_status": mlflow.get_run(parent.info.run_id).info.status,
            "history": {key: history(key) for key in ("loss", "acc", "throughput", "batch")},
            "batch_time": now,
            "deleted_stage": client.get_run(child.info.run_id).info.lifecycle_stage,
            "active": names(ViewType.ACTIVE_ONLY),
            "all": names(ViewType.ALL),
            "deleted": names(ViewType.DELETED_ONLY),
            "default": sorted(r.info.run_name for r in client.search_runs([experiment_id])),
        })
        """
    )
    parent, child, unnamed = got["parent"], got["child"], got["unnamed"]
    parent_id = parent["info"]["run_id"]
    info = parent["info"]
    assert info["run_name"] == "parent"
    assert info["status"] == "FINISHED" == got["fluent_status"]
    assert info["lifecycle_stage"] == "active"
    assert info["experiment_id"] == got["experiment_id"]
    assert info["end_time"] >= info["start_time"] > 0
    assert info["artifact_uri"].startswith("mlflow-artifacts:/")
    assert info["artifact_uri"].endswith(f"/{parent_id}/artifacts")
    params = {"lr": "0.1", "depth": "3", "optimizer": "adam", "batch_param": "x"}
    assert parent["params"] == params
    metrics = {"loss": 0.25, "acc": 0.9, "f1": 0.8, "throughput": 12.0, "batch": 2.5}
    assert parent["metrics"] == metrics
    user_tags = {"team": "a", "stage": "dev", "owner": "ana", "batch_tag": "y"}
    assert parent["tags"].items() >= user_tags.items()
    # Tags the client sends at run creation, and the run name tag the server keeps in step with run_name.
    assert parent["tags"]["mlflow.runName"] == "parent"
    assert parent["tags"]["mlflow.user"] == info["user_id"]
    assert parent["tags"]["mlflow.source.name"] == "client_script.py"
    assert parent["tags"]["mlflow.source.type"] == "LOCAL"
    assert "mlflow.parentRunId" not in parent["tags"]
    assert child["tags"]["mlflow.parentRunId"] == parent_id
    assert child["params"] == {"fold": "1"}
    assert child["info"]["status"] == "FINISHED"
    # A run started without a name gets one from the server, also as its mlflow.runName tag.
    assert unnamed["info"]["run_name"]
    assert unnamed["tags"]["mlflow.runName"] == unnamed["info"]["run_name"]

    history = got["history"]
    assert [point[:2] for point in history["loss"]] == [[1.0, 0], [0.5, 1], [0.25, 2]]
    assert [point[:2] for point in history["acc"]] == [[0.9, 2]]
    assert [point[:2] for point in history["throughput"]] == [[10.0, 0], [11.0, 1], [12.0, 2]]
    assert history["batch"] == [[1.5, 0, got["batch_time"]], [2.5, 1, got["batch_time"] + 1]]

    assert got["deleted_stage"] == "deleted"
    assert got["active"] == got["default"] == sorted(["parent", unnamed["info"]["run_name"]])
    assert got["all"] == sorted(["parent", "child", unnamed["info"]["run_name"]])
    assert got["deleted"] == ["child"]

    if target.kind == "loopml":
        client = Client(target.loopml)
        stored = client.get_run(parent_id)
        assert stored.name == "parent"
        assert stored.experiment_id == got["experiment_id"]
        assert stored.status == "FINISHED"
        assert stored.end_time is not None
        assert stored.params == params
        assert stored.metrics == metrics
        assert stored.tags.items() >= user_tags.items()
        assert [(m.value, m.step) for m in client.get_metric_history(parent_id, "loss")] == [
            (1.0, 0),
            (0.5, 1),
            (0.25, 2),
        ]
        assert [(m.value, m.step, m.timestamp) for m in client.get_metric_history(parent_id, "batch")] == [
            (1.5, 0, got["batch_time"]),
            (2.5, 1, got["batch_time"] + 1),
        ]
        stored_child = client.get_run(child["info"]["run_id"])
        assert stored_child.parent_run_id == parent_id
        assert stored_child.name == "child"
        assert stored_child.lifecycle == "deleted"
        assert "compat-tracking" in [e.name for e in client.list_experiments()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_artifacts_upload_list_and_download(target: Target, tmp_path: Path) -> None:
    got = target.run(
        """
        import hashlib
        import json
        import pathlib

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mlflow
        import yaml
        from mlflow import MlflowClient

        def digests(folder):
            folder = pathlib.Path(folder)
            return {
                p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*"))
                if p.is_file()
            }

        upload = pathlib.Path("upload")
        (upload / "data" / "nested").mkdir(parents=True)
        (upload / "notes.txt").write_text("hello artifacts\\n")
        (upload / "data" / "table.csv").write_text("a,b\\n1,2\\n")
        (upload / "data" / "nested" / "blob.bin").write_bytes(bytes(range(256)) * 64)
        config = {"lr": 0.1, "layers": [64, 32], "name": "compat"}

        mlflow.set_experiment("compat-artifacts")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(upload / "notes.txt"))
            mlflow.log_artifact(str(upload / "notes.txt"), artifact_path="docs")
            mlflow.log_artifacts(str(upload / "data"), artifact_path="data")
            mlflow.log_dict(config, "config/params.json")
            mlflow.log_dict(config, "config/params.yaml")
            mlflow.log_text("some text\\n", "text/readme.md")
            figure, axes = plt.subplots()
            axes.plot([0, 1, 2], [2, 0, 1])
            mlflow.log_figure(figure, "plots/line.png")
        run_id = run.info.run_id
        client = MlflowClient()

        def listing(path=None):
            return sorted([f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, path))

        everything = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path="all")
        data = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data", dst_path="data-only")
        one = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt", dst_path="one")
        client_copy = client.download_artifacts(run_id, "config", dst_path="client")
        everything = pathlib.Path(everything)
        report({
            "run_id": run_id,
            "uploaded": digests(upload),
            "listings": {path: listing(path or None) for path in ("", "data", "data/nested", "config", "nope")},
            "all": digests(everything),
            "sizes": {
                p.relative_to(everything).as_posix(): p.stat().st_size
                for p in everything.rglob("*")
                if p.is_file()
            },
            "data": digests(data),
            "data_name": pathlib.Path(data).name,
            "one": [pathlib.Path(one).name, pathlib.Path(one).read_text()],
            "client_copy": digests(client_copy),
            "json": json.loads((everything / "config" / "params.json").read_text()),
            "yaml": yaml.safe_load((everything / "config" / "params.yaml").read_text()),
            "text": (everything / "text" / "readme.md").read_text(),
            "png": (everything / "plots" / "line.png").read_bytes()[:8].hex(),
            "config": config,
        })
        """
    )
    uploaded, everything, sizes = got["uploaded"], got["all"], got["sizes"]
    assert set(everything) == {
        "notes.txt",
        "docs/notes.txt",
        "data/table.csv",
        "data/nested/blob.bin",
        "config/params.json",
        "config/params.yaml",
        "text/readme.md",
        "plots/line.png",
    }
    for path in ("notes.txt", "data/table.csv", "data/nested/blob.bin"):
        assert everything[path] == uploaded[path]
    assert everything["docs/notes.txt"] == uploaded["notes.txt"]
    assert got["data_name"] == "data"
    assert got["data"] == {
        "table.csv": uploaded["data/table.csv"],
        "nested/blob.bin": uploaded["data/nested/blob.bin"],
    }
    assert got["one"] == ["notes.txt", "hello artifacts\n"]
    assert got["client_copy"] == {
        "params.json": everything["config/params.json"],
        "params.yaml": everything["config/params.yaml"],
    }
    assert got["json"] == got["yaml"] == got["config"]
    assert got["text"] == "some text\n"
    assert got["png"] == "89504e470d0a1a0a"  # the PNG signature

    listings = got["listings"]
    # Folders are listed with is_dir and no size; paths are relative to the run's artifact root.
    assert listings[""] == [
        ["config", True, None],
        ["data", True, None],
        ["docs", True, None],
        ["notes.txt", False, 16],
        ["plots", True, None],
        ["text", True, None],
    ]
    assert listings["data"] == [["data/nested", True, None], ["data/table.csv", False, 8]]
    assert listings["data/nested"] == [["data/nested/blob.bin", False, 16384]]
    assert listings["config"] == [
        ["config/params.json", False, sizes["config/params.json"]],
        ["config/params.yaml", False, sizes["config/params.yaml"]],
    ]
    assert listings["nope"] == []

    if target.kind == "loopml":
        client = Client(target.loopml)
        stored = {a.path: a.size for a in client.list_artifacts(got["run_id"])}
        assert stored == sizes
        copy = client.download_artifacts(got["run_id"], dst_path=tmp_path / "loopml-copy")
        assert {
            p.relative_to(copy).as_posix(): _sha256(p) for p in copy.rglob("*") if p.is_file()
        } == everything


def test_search_runs_and_experiments(target: Target) -> None:
    got = target.run(
        """
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import ViewType

        client = MlflowClient()
        first = mlflow.set_experiment("srch-first").experiment_id
        # name, acc, lr, team
        specs = [
            ("x-1", 0.9, "0.1", "a"),
            ("x-2", 0.7, "0.1", "b"),
            ("x-3", 0.4, "0.1", "a"),
            ("y-1", 0.8, "0.2", "a"),
            ("x-4", 0.95, "0.2", "a"),
        ]
        ids = {}
        for name, acc, lr, team in specs:
            with mlflow.start_run(run_name=name) as run:
                mlflow.log_metric("acc", acc)
                mlflow.log_param("lr", lr)
                mlflow.set_tag("team", team)
                ids[name] = run.info.run_id
        failed = mlflow.start_run(run_name="x-failed")
        mlflow.log_metric("acc", 0.1)
        mlflow.set_tag("team", "c")
        mlflow.end_run(status="FAILED")
        ids["x-failed"] = failed.info.run_id
        with mlflow.start_run(run_name="x-deleted") as deleted:
            mlflow.log_metric("acc", 0.99)
        client.delete_run(deleted.info.run_id)
        ids["x-deleted"] = deleted.info.run_id
        second = mlflow.set_experiment("srch-second").experiment_id
        with mlflow.start_run(run_name="b-1"):
            mlflow.log_metric("acc", 0.97)

        def names(filter_string="", experiments=(first,), **kwargs):
            runs = mlflow.search_runs(list(experiments), filter_string, output_format="list", **kwargs)
            return [run.info.run_name for run in runs]

        pages, token = [], None
        for _ in range(10):
            page = client.search_runs([first], order_by=["metrics.acc DESC"], max_results=2, page_token=token)
            pages.append([run.info.run_name for run in page])
            token = page.token
            if not token:
                break
        frame = mlflow.search_runs(
            experiment_names=["srch-first"], filter_string="params.lr = '0.2'", order_by=["metrics.acc ASC"]
        )
        report({
            "ids": ids,
            "first": first,
            "second": second,
            "acc_and_lr": sorted(names("metrics.acc > 0.5 and params.lr = '0.1'")),
            "team_a": sorted(names("tags.team = 'a'")),
            "finished": sorted(names("attributes.status = 'FINISHED'")),
            "failed": names("attributes.status = 'FAILED'"),
            "like": sorted(names("run_name LIKE 'x%'")),
            "attributes_like": sorted(names("attributes.run_name LIKE 'x-%'")),
            "ordered": names(order_by=["metrics.acc DESC"]),
            "client_ordered": [r.info.run_name for r in client.search_runs([first], order_by=["metrics.acc ASC"])],
            "both": sorted(names("metrics.acc > 0.9", experiments=(first, second))),
            "pages": pages,
            "last_token": token,
            "all": sorted(names(run_view_type=ViewType.ALL)),
            "deleted_only": names(run_view_type=ViewType.DELETED_ONLY),
            "frame": {
                "names": frame["tags.mlflow.runName"].tolist(),
                "acc": frame["metrics.acc"].tolist(),
                "status": frame["status"].tolist(),
            },
            "experiments": sorted(e.name for e in mlflow.search_experiments(filter_string="name LIKE 'srch-%'")),
            "by_name": mlflow.get_experiment_by_name("srch-first").experiment_id,
            "missing": mlflow.get_experiment_by_name("srch-none") is None,
            "experiment": {
                key: value for key, value in dict(client.get_experiment(first)).items() if key != "tags"
            },
        })
        """
    )
    active = ["x-1", "x-2", "x-3", "x-4", "x-failed", "y-1"]
    assert got["acc_and_lr"] == ["x-1", "x-2"]
    assert got["team_a"] == ["x-1", "x-3", "x-4", "y-1"]
    assert got["finished"] == ["x-1", "x-2", "x-3", "x-4", "y-1"]
    assert got["failed"] == ["x-failed"]
    assert got["like"] == got["attributes_like"] == ["x-1", "x-2", "x-3", "x-4", "x-failed"]
    by_acc = ["x-4", "x-1", "y-1", "x-2", "x-3", "x-failed"]
    assert got["ordered"] == by_acc
    assert got["client_ordered"] == by_acc[::-1]
    assert got["both"] == ["b-1", "x-4"]
    pages = got["pages"]
    assert len(pages[0]) == 2
    assert all(len(page) <= 2 for page in pages)
    assert [name for page in pages for name in page] == by_acc
    assert not got["last_token"]
    assert got["all"] == sorted([*active, "x-deleted"])
    assert got["deleted_only"] == ["x-deleted"]
    assert got["frame"] == {"names": ["y-1", "x-4"], "acc": [0.8, 0.95], "status": ["FINISHED", "FINISHED"]}
    assert got["experiments"] == ["srch-first", "srch-second"]
    assert got["by_name"] == got["first"]
    assert got["missing"] is True
    experiment = got["experiment"]
    assert experiment["name"] == "srch-first"
    assert experiment["experiment_id"] == got["first"]
    assert experiment["lifecycle_stage"] == "active"
    assert experiment["artifact_location"] == f"mlflow-artifacts:/{got['first']}"

    if target.kind == "loopml":
        client = Client(target.loopml)
        assert {"srch-first", "srch-second"} <= {e.name for e in client.list_experiments()}
        assert client.get_run(got["ids"]["x-failed"]).status == "FAILED"
        assert client.get_run(got["ids"]["x-deleted"]).lifecycle == "deleted"
        assert client.get_run(got["ids"]["x-4"]).metrics == {"acc": 0.95}


MODEL_SCRIPT = """
import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

NAME = "compat-classifier"
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]])
first_model = LogisticRegression().fit(X, [0, 1, 0, 1, 0, 1])
second_model = LogisticRegression().fit(X, [0, 0, 0, 1, 1, 1])
client = MlflowClient()
mlflow.set_experiment("compat-models")
with mlflow.start_run() as first_run:
    first = mlflow.sklearn.log_model(first_model, name="model", input_example=X[:2])
registered = mlflow.register_model(f"models:/{first.model_id}", NAME)
with mlflow.start_run() as second_run:
    second = mlflow.sklearn.log_model(
        second_model, name="model", input_example=X[:2], registered_model_name=NAME
    )
client.set_registered_model_alias(NAME, "candidate", registered.version)
by_alias = client.get_model_version_by_alias(NAME, "candidate")
model = client.get_registered_model(NAME)
versions = sorted(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))


def predict(uri, flavor):
    return flavor.load_model(uri).predict(X).tolist()


report({
    "first": {"model_id": first.model_id, "model_uri": first.model_uri, "run_id": first_run.info.run_id},
    "second": {"model_id": second.model_id, "registered_version": second.registered_model_version},
    "second_run_id": second_run.info.run_id,
    "registered": {
        "name": registered.name,
        "version": registered.version,
        "source": registered.source,
        "run_id": registered.run_id,
        "status": registered.status,
    },
    "by_alias": {"version": by_alias.version, "aliases": list(by_alias.aliases), "run_id": by_alias.run_id},
    "model_aliases": dict(model.aliases),
    "versions": [[v.version, v.run_id, v.source, v.status] for v in versions],
    "expected": {"first": first_model.predict(X).tolist(), "second": second_model.predict(X).tolist()},
    "predictions": {
        "pyfunc_alias": predict(f"models:/{NAME}@candidate", mlflow.pyfunc),
        "sklearn_alias": predict(f"models:/{NAME}@candidate", mlflow.sklearn),
        "sklearn_version": predict(f"models:/{NAME}/2", mlflow.sklearn),
        "pyfunc_logged": predict(first.model_uri, mlflow.pyfunc),
    },
    "missing_alias": error_code(client.get_model_version_by_alias, NAME, "nope"),
    "missing_version": error_code(client.get_model_version, NAME, "99"),
})
"""


def test_log_register_alias_and_load_a_model(target: Target) -> None:
    got = target.run(MODEL_SCRIPT)
    first, registered = got["first"], got["registered"]
    assert first["model_id"].startswith("m-")
    assert first["model_uri"] == f"models:/{first['model_id']}"
    assert registered == {
        "name": "compat-classifier",
        "version": "1",
        "source": f"models:/{first['model_id']}",
        "run_id": first["run_id"],
        "status": "READY",
    }
    assert got["second"]["registered_version"] == "2"
    assert got["by_alias"] == {"version": "1", "aliases": ["candidate"], "run_id": first["run_id"]}
    assert got["model_aliases"] == {"candidate": "1"}
    assert got["versions"] == [
        ["1", first["run_id"], f"models:/{first['model_id']}", "READY"],
        ["2", got["second_run_id"], f"models:/{got['second']['model_id']}", "READY"],
    ]
    expected = got["expected"]
    assert expected["first"] != expected["second"]  # so the alias is shown to pick the right version
    assert got["predictions"] == {
        "pyfunc_alias": expected["first"],
        "sklearn_alias": expected["first"],
        "sklearn_version": expected["second"],
        "pyfunc_logged": expected["first"],
    }
    # MLflow's own quirk: an unknown alias of a known model is INVALID_PARAMETER_VALUE (HTTP 400).
    assert got["missing_alias"] == "INVALID_PARAMETER_VALUE"
    assert got["missing_version"] == "RESOURCE_DOES_NOT_EXIST"

    if target.kind == "loopml":
        registry = RegistryStore(target.loopml.stores.db)
        assert registry.get_model("compat-classifier").aliases == {"candidate": 1}
        versions = sorted(registry.list_versions("compat-classifier"), key=lambda v: v.version)
        assert [(v.version, v.run_id, v.logged_model_id) for v in versions] == [
            (1, first["run_id"], first["model_id"]),
            (2, got["second_run_id"], got["second"]["model_id"]),
        ]
        assert versions[0].source_uri == f"models:/{first['model_id']}"


def test_errors_the_client_sees(target: Target) -> None:
    got = target.run(
        """
        import mlflow
        from mlflow import MlflowClient

        client = MlflowClient()
        experiment_id = mlflow.set_experiment("compat-errors").experiment_id
        run = client.create_run(experiment_id)
        run_id = run.info.run_id
        client.log_param(run_id, "lr", "0.1")
        report({
            "unknown_run": error_code(client.get_run, "0" * 32),
            "param_changed": error_code(client.log_param, run_id, "lr", "0.2"),
            "param_same": error_code(client.log_param, run_id, "lr", "0.1"),
            "experiment_exists": error_code(client.create_experiment, "compat-errors"),
            "unknown_experiment": error_code(client.get_experiment, "987654321"),
            "unknown_model": error_code(client.get_registered_model, "nope"),
            "params": client.get_run(run_id).data.params,
        })
        """
    )
    assert got == {
        "unknown_run": "RESOURCE_DOES_NOT_EXIST",
        "param_changed": "INVALID_PARAMETER_VALUE",
        "param_same": None,
        "experiment_exists": "RESOURCE_ALREADY_EXISTS",
        "unknown_experiment": "RESOURCE_DOES_NOT_EXIST",
        "unknown_model": "RESOURCE_DOES_NOT_EXIST",
        "params": {"lr": "0.1"},
    }


def test_wire_rules(target: Target) -> None:
    """Plain HTTP, as other clients (and retrying proxies) speak it."""
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    with httpx.Client(base_url=f"{target.url}/api/2.0/mlflow", headers=headers, trust_env=False) as http:

        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            return http.post(path, json=body)

        created = post("/experiments/create", {"name": "compat-wire"})
        assert created.status_code == 200
        experiment_id = created.json()["experiment_id"]
        assert isinstance(experiment_id, str)
        run = post("/runs/create", {"experiment_id": experiment_id, "run_name": "wire", "start_time": 1000})
        assert run.status_code == 200
        info = run.json()["run"]["info"]
        run_id = info["run_id"]
        assert info["run_uuid"] == run_id
        assert info["run_name"] == "wire"
        assert info["status"] == "RUNNING"
        assert info["lifecycle_stage"] == "active"

        # A retried log-batch (same body twice) leaves each metric point once.
        batch = {
            "run_id": run_id,
            "metrics": [
                {"key": "m", "value": 1.0, "timestamp": 2000, "step": 0},
                {"key": "m", "value": 2.0, "timestamp": 2001, "step": 1},
            ],
            "params": [{"key": "p", "value": "v"}],
            "tags": [{"key": "t", "value": "v"}],
        }
        for _ in range(2):
            retried = post("/runs/log-batch", batch)
            assert retried.status_code == 200
            assert retried.json() == {}  # empty successes are {}
        history = http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "m"})
        assert history.status_code == 200
        assert history.json() == {"metrics": batch["metrics"]}
        # A retried log-metric likewise.
        point = {"run_id": run_id, "key": "single", "value": 3.0, "timestamp": 3000, "step": 7}
        for _ in range(2):
            assert post("/runs/log-metric", point).json() == {}
        single = http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "single"}).json()
        assert single == {"metrics": [{"key": "single", "value": 3.0, "timestamp": 3000, "step": 7}]}

        for path, body in [
            ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"}),  # the same value again
            ("/runs/set-tag", {"run_id": run_id, "key": "t2", "value": "w"}),
            ("/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 5000}),
        ]:
            answer = post(path, body)
            assert answer.status_code == 200, answer.text
            if path != "/runs/update":
                assert answer.json() == {}

        # GET takes its parameters in the query string.
        fetched = http.get("/runs/get", params={"run_id": run_id})
        assert fetched.status_code == 200
        data = fetched.json()["run"]["data"]
        assert fetched.json()["run"]["info"]["status"] == "FINISHED"
        assert fetched.json()["run"]["info"]["end_time"] == 5000
        assert data["params"] == [{"key": "p", "value": "v"}]
        assert {"key": "t", "value": "v"} in data["tags"]
        assert {"key": "t2", "value": "w"} in data["tags"]
        assert {"key": "mlflow.runName", "value": "wire"} in data["tags"]
        assert {m["key"]: m["value"] for m in data["metrics"]} == {"m": 2.0, "single": 3.0}
        by_name = http.get("/experiments/get-by-name", params={"experiment_name": "compat-wire"})
        assert by_name.json()["experiment"]["experiment_id"] == experiment_id

        # Errors are JSON with error_code and message, and the HTTP status MLflow gives the code.
        errors = [
            (http.get("/runs/get", params={"run_id": "f" * 32}), 404, "RESOURCE_DOES_NOT_EXIST"),
            (
                post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "w"}),
                400,
                "INVALID_PARAMETER_VALUE",
            ),
            (post("/experiments/create", {"name": "compat-wire"}), 400, "RESOURCE_ALREADY_EXISTS"),
            (http.get("/registered-models/get", params={"name": "nope"}), 404, "RESOURCE_DOES_NOT_EXIST"),
        ]
        for response, status, code in errors:
            assert (response.status_code, response.json()["error_code"]) == (status, code), response.text
            assert response.json()["message"]

        # An unknown route: MLflow answers Flask's HTML 404 page (which the client reads as ENDPOINT_NOT_FOUND);
        # LoopML answers a JSON error saying the same.
        unknown = http.get("/no-such-route")
        assert unknown.status_code == 404
        if target.kind == "loopml":
            assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    unknown_code = run_client(
        """
        from mlflow.utils.rest_utils import MlflowHostCreds, call_endpoint
        from mlflow.protos.service_pb2 import GetRun
        import os

        creds = MlflowHostCreds(os.environ["MLFLOW_TRACKING_URI"], token=os.environ.get("MLFLOW_TRACKING_TOKEN"))
        report(error_code(call_endpoint, creds, "/api/2.0/mlflow/no-such-route", "GET", "{}", GetRun.Response))
        """,
        tracking_uri=target.url,
        env=target.env,
    )
    assert unknown_code == "ENDPOINT_NOT_FOUND"
