"""Deployment export: the build context, the baked project, the Kubernetes manifests, and bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import loopml
from loopml._version import __version__
from loopml.core.errors import InvalidInput, NotFound, StoreCorrupt
from loopml.core.settings import load_settings
from loopml.registry.loading import forget_loaded
from loopml.registry.store import RegistryStore
from loopml.serving.export import export_deployment
from loopml.serving.export_kubernetes import kubernetes_manifests, label_value, resource_name
from loopml.storage.blobs.tree import get_tree
from loopml.tracking.tracker import Tracker

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# The oldest Kubernetes still commonly run, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def frame(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"amount": rng.normal(100, 20, rows), "age": rng.integers(18, 80, rows)})


@pytest.fixture
def source(sqlite_tracker: Tracker) -> Tracker:
    """A project with fraud v1 and v2 (tagged), and champion on v2: the baked version must stay v2."""
    x = frame()
    y = (x["amount"] > 100).astype(int)
    loopml.models.register("fraud", LogisticRegression(max_iter=1000).fit(x, y), sample=x)
    loopml.models.register(
        "fraud", LogisticRegression(max_iter=1000, C=0.01).fit(x, y), sample=x, tags={"team": "risk"}
    )
    loopml.models.set_alias("fraud", "champion", 2, reason="better")
    return sqlite_tracker


def dockerfile_lines(folder: Path) -> list[str]:
    text = (folder / "Dockerfile").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def instruction(lines: list[str], name: str) -> list[str]:
    return [line.removeprefix(f"{name} ") for line in lines if line.startswith(f"{name} ")]


def test_docker_context_pins_requirements_and_runs_loopml_serve(source: Tracker, tmp_path: Path) -> None:
    done = export_deployment("fraud@champion", tmp_path / "out")
    folder = done.directory
    assert done.version.version == 2
    assert done.image == "loopml-fraud:v2"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "README.md",
        "project",
        "requirements.txt",
    ]
    lines = dockerfile_lines(folder)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert lines[0] == f"FROM python:{python}-slim"
    assert "RUN pip install --no-cache-dir -r requirements.txt" in lines
    assert "COPY --chown=10001:10001 project /app/project" in lines
    assert instruction(lines, "USER") == ["10001"]
    assert instruction(lines, "WORKDIR")[-1] == "/app/project"
    assert "LOOPML_HOME=/app/project/.loopml" in instruction(lines, "ENV")
    assert instruction(lines, "EXPOSE") == ["8000"]
    (health,) = instruction(lines, "HEALTHCHECK")
    assert "http://127.0.0.1:8000/v2/health/live" in health
    (command,) = instruction(lines, "CMD")
    assert json.loads(command) == ["loopml", "serve", "fraud@champion", "--host", "0.0.0.0", "--port", "8000"]
    # The requirements install before the project is copied, so a new model rebuilds on a cached layer.
    assert lines.index("RUN pip install --no-cache-dir -r requirements.txt") < lines.index(
        "COPY --chown=10001:10001 project /app/project"
    )

    requirements = [
        line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert requirements == done.requirements
    assert all("==" in line for line in requirements), requirements
    head = requirements[0]
    assert head.startswith("loopml[")
    assert head.endswith(f"]=={__version__}")
    assert {"serve", "sklearn", "data"} <= set(head[len("loopml[") : head.index("]")].split(","))
    manifest = loopml.models.manifest("fraud@v2")
    for library, version in manifest["libraries"].items():
        assert f"{library}=={version}" in requirements
    if "onnx/model.onnx" in manifest["files"]:  # serving prefers the ONNX copy: onnxruntime must be there
        assert "onnx" in head
        assert any(line.startswith("onnxruntime==") for line in requirements)
    assert "k8s/" in (folder / ".dockerignore").read_text()
    assert "docker build -t loopml-fraud:v2 ." in (folder / "README.md").read_text()


def test_baked_project_resolves_the_same_version_and_predicts_the_same(
    source: Tracker, tmp_path: Path
) -> None:
    original = loopml.models.get("fraud@champion")
    export_deployment("fraud@champion", tmp_path / "out")
    project = tmp_path / "out" / "project"
    assert not list(project.rglob("*.db-wal")), "the WAL is checkpointed into loopml.db"
    baked = Tracker(load_settings(project_dir=project))
    try:
        store = RegistryStore(baked.stores.db)
        version = store.get_version("fraud@champion")
        assert version == original  # number, id, flavor, content hash, package digest, signature, tags
        assert version.tags == {"team": "risk"}
        assert [v.ref for v in store.list_versions("fraud")] == ["fraud@v2"]  # only the exported version
        assert [m.name for m in store.list_models()] == ["fraud"]
        assert [(e.to_version, e.outcome) for e in store.history("fraud", "champion")] == [(2, "moved")]
        tree = get_tree(baked.blobs, version.package_digest)
        assert all(baked.blobs.exists(entry.digest) for entry in tree.entries)
        forget_loaded()  # load from the baked store's blobs, not from this process's memory
        rows = frame(rows=20, seed=7)
        expected = loopml.models.load("fraud@champion").predict_proba(rows)
        got = loopml.models.load("fraud@champion", tracker=baked).predict_proba(rows)
        np.testing.assert_array_equal(got, expected)
    finally:
        baked.close()


def kubernetes(source: Tracker, folder: Path, **options: Any) -> dict[str, dict[str, Any]]:
    export_deployment("fraud@champion", folder, target="kubernetes", **options)
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted((folder / "k8s").glob("*.yaml"))}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate_against_the_schemas(
    source: Tracker, tmp_path: Path, version: str
) -> None:
    documents = kubernetes(source, tmp_path / "out")
    assert sorted(documents) == ["deployment", "hpa", "service"]
    for document in documents.values():
        kubernetes_validate.validate(document, version, strict=True)
    assert "&id" not in (tmp_path / "out" / "k8s" / "deployment.yaml").read_text()  # no YAML anchors


def test_kubernetes_probes_ports_labels_and_autoscaler(source: Tracker, tmp_path: Path) -> None:
    documents = kubernetes(source, tmp_path / "out", image="registry.local/fraud:2", replicas=3, port=9000)
    deployment, service, hpa = documents["deployment"], documents["service"], documents["hpa"]
    spec = deployment["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/fraud:2"
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/v2/health/live",
        "port": 9000,
        "scheme": "HTTP",
    }
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v2/health/ready",
        "port": 9000,
        "scheme": "HTTP",
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert spec["replicas"] == 3
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "loopml-fraud"
    assert labels["loopml/model"] == "fraud"
    assert labels["loopml/model-version"] == "v2"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == 9000
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "loopml-fraud",
    }
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["maxReplicas"] > 3
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert (
        deployment["metadata"]["annotations"]["loopml/content-hash"]
        == loopml.models.get("fraud@v2").content_hash
    )
    assert instruction(dockerfile_lines(tmp_path / "out"), "EXPOSE") == ["9000"]


def test_names_that_are_not_valid_labels_are_sanitised(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    name = "Risk.Team/Fraud_Detector-" + "x" * 80
    x = frame()
    registered = loopml.models.register(
        name, LogisticRegression(max_iter=1000).fit(x, x["age"] > 40), sample=x
    )
    documents = kubernetes_manifests(registered.version, name, image="img:1")
    for document in documents.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)
        for value in document["metadata"]["labels"].values():
            assert LABEL_VALUE.match(value), value
            assert len(value) <= 63
        assert DNS_LABEL.match(document["metadata"]["name"])
    assert documents["deployment"]["metadata"]["annotations"]["loopml/model"] == name  # exact name kept


@given(st.text(max_size=200))
def test_label_values_and_resource_names_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value
    name = resource_name(text)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name


def test_distinct_long_names_stay_distinct() -> None:
    assert label_value("a" * 70 + "1") != label_value("a" * 70 + "2")
    assert resource_name("a" * 70 + "1") != resource_name("a" * 70 + "2")
    assert label_value("fraud") == "fraud"


def test_unknown_model_alias_and_target_are_refused(source: Tracker, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        export_deployment("nope@champion", out)
    with pytest.raises(NotFound, match="has no challenger"):
        export_deployment("fraud@challenger", out)
    with pytest.raises(InvalidInput, match="unsupported deployment target 'helm'"):
        export_deployment("fraud@champion", out, target="helm")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_folder_that_is_not_empty_is_replaced_only_with_force(source: Tracker, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="not empty; choose a new folder or pass --force"):
        export_deployment("fraud@champion", out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    export_deployment("fraud@champion", out, force=True)
    assert not (out / "mine.txt").exists()
    assert (out / "Dockerfile").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_deployment("fraud@v1", empty)  # an empty folder needs no force
    assert json.loads(instruction(dockerfile_lines(empty), "CMD")[0])[2] == "fraud@v1"
    with pytest.raises(InvalidInput, match="holds"):
        export_deployment("fraud@champion", tmp_path, force=True)  # the project itself: never replaced
    assert (tmp_path / ".loopml").is_dir()


def test_the_baked_store_ignores_the_shells_store_settings(
    source: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "team-store"
    monkeypatch.setenv("LOOPML_DATABASE_URL", f"sqlite:///{elsewhere / 'team.db'}")
    monkeypatch.setenv("LOOPML_ARTIFACT_URL", str(elsewhere / "blobs"))
    monkeypatch.setenv("LOOPML_HOME", str(elsewhere))
    export_deployment("fraud@champion", tmp_path / "out")
    assert not elsewhere.exists()
    assert (tmp_path / "out" / "project" / ".loopml" / "loopml.db").is_file()


def test_a_failure_half_way_leaves_nothing_behind(source: Tracker, tmp_path: Path) -> None:
    version = loopml.models.get("fraud@champion")
    entry = get_tree(source.blobs, version.package_digest).entries[0]
    Path(source.blobs.path_of(entry.digest)).write_bytes(b"not the model any more")
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("an earlier export")
    with pytest.raises(StoreCorrupt, match="no longer matches its hash"):
        export_deployment("fraud@champion", out, force=True)
    assert [p.name for p in out.iterdir()] == ["previous.txt"]  # the earlier export is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_bundled_wheel_is_copied_and_installed_by_path(source: Tracker, tmp_path: Path) -> None:
    wheel = tmp_path / "loopml-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not inspected by the export")
    done = export_deployment("fraud@champion", tmp_path / "out", loopml_wheel=wheel)
    assert (done.directory / "wheels" / wheel.name).is_file()
    assert done.requirements[0].startswith(f"./wheels/{wheel.name}[")
    assert "COPY wheels/ ./wheels/" in dockerfile_lines(done.directory)
    with pytest.raises(InvalidInput, match="not a LoopML wheel"):
        export_deployment("fraud@champion", tmp_path / "other", loopml_wheel=tmp_path / "missing.whl")
