"""The registry: register (same model recognised), load by alias, aliases with an audit trail, lineage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import Conflict, InvalidInput, NotFound, StoreCorrupt
from loopml.registry.store import RegistryStore
from loopml.storage.blobs.tree import get_tree
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


def data(seed: int = 0, rows: int = 80) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": rng.normal(100, 20, rows), "age": rng.integers(18, 80, rows)})
    return frame, (frame["amount"] > 100).astype(int)


def fitted(seed: int = 0) -> LogisticRegression:
    x, y = data(seed)
    return LogisticRegression(max_iter=1000).fit(x, y)


def test_register_load_and_recognise_the_same_model(tracker: Tracker) -> None:
    x, _ = data()
    first = loopml.models.register("fraud", fitted(), sample=x)
    assert first.created
    assert first.version.ref == "fraud@v1"
    assert first.version.flavor == "sklearn"
    again = loopml.models.register("fraud", fitted(), sample=x)  # a new fit of the same data: same model
    assert not again.created
    assert again.version.version == 1
    other = loopml.models.register("fraud", fitted(seed=1), sample=x)
    assert other.version.version == 2
    loaded = loopml.models.load("fraud@v1")
    assert (loaded.predict(x) == fitted().predict(x)).all()
    assert loopml.models.load("fraud").predict(x).tolist() == fitted(seed=1).predict(x).tolist()  # latest
    signature = first.version.signature or {}
    assert [c["name"] for c in signature["inputs"]] == ["amount", "age"]


def test_aliases_move_with_an_audit_trail(tracker: Tracker) -> None:
    x, _ = data()
    loopml.models.register("fraud", fitted(), sample=x)
    loopml.models.register("fraud", fitted(seed=1), sample=x)
    loopml.models.set_alias("fraud", "champion", 1, reason="first")
    loopml.models.set_alias("fraud", "champion", 2, reason="better")
    loopml.models.delete_alias("fraud", "champion", reason="rollback test")
    events = loopml.models.history("fraud", "champion")
    assert [(e.from_version, e.to_version, e.outcome, e.reason) for e in events] == [
        (None, 1, "moved", "first"),
        (1, 2, "moved", "better"),
        (2, None, "removed", "rollback test"),
    ]
    with pytest.raises(NotFound, match="no champion"):
        loopml.models.load("fraud@champion")


@pytest.mark.embedded_only  # the store's conditional move; a server client moves aliases through the API
def test_a_conditional_alias_move_refuses_a_stale_view(tracker: Tracker) -> None:
    x, _ = data()
    loopml.models.register("fraud", fitted(), sample=x)
    loopml.models.register("fraud", fitted(seed=1), sample=x)
    store = RegistryStore(tracker.stores.db)
    store.move_alias("fraud", "champion", 1)
    with pytest.raises(Conflict, match="moved to v1"):
        store.move_alias("fraud", "champion", 2, check_from=True, expected_from=None)
    assert loopml.models.get("fraud@champion").version == 1


def test_unknown_names_versions_and_aliases_say_what_exists(tracker: Tracker) -> None:
    x, _ = data()
    loopml.models.register("fraud", fitted(), sample=x)
    with pytest.raises(NotFound, match="no registered model 'nope'; registered models: fraud"):
        loopml.models.get("nope")
    with pytest.raises(NotFound, match=r"has no v7 \(versions v1..v1; no aliases\)"):
        loopml.models.get("fraud@v7")
    with pytest.raises(NotFound, match="v3"):
        loopml.models.set_alias("fraud", "champion", 3)
    with pytest.raises(InvalidInput, match="not a model reference"):
        loopml.models.get("fraud@@x")


def test_an_unsupported_model_registers_nothing(tracker: Tracker) -> None:
    with pytest.raises(InvalidInput):
        loopml.models.register("odd", object())
    assert loopml.models.models() == []


def test_lineage_comes_from_the_run(tracker: Tracker) -> None:
    x, y = data()
    loopml.datasets.add("transactions", x.assign(label=y))
    with loopml.start_run(experiment="fraud") as run:
        loopml.datasets.load("transactions@v1")
        run.log_metric("auc", 0.91)
        run.set_tag("loopml.eval.dataset", "transactions_holdout@v1")
        registered = loopml.models.register("fraud", fitted(), sample=x)
    manifest = loopml.models.manifest("fraud@v1")
    lineage = manifest["lineage"]
    assert lineage["run_id"] == run.run_id
    assert lineage["datasets"][0]["name"] == "transactions"
    assert lineage["eval_dataset"] == "transactions_holdout@v1"
    assert registered.version.metrics == {"auc": 0.91}
    assert registered.version.run_id == run.run_id


@pytest.mark.embedded_only  # tampers with the store's files, which only the server can reach
def test_a_tampered_package_is_refused_on_load(tracker: Tracker, tmp_path: Path) -> None:
    x, _ = data()
    version = loopml.models.register("fraud", fitted(), sample=x).version
    tree = get_tree(tracker.blobs, version.package_digest)
    model_file = next(e for e in tree.entries if e.path.startswith("model/"))
    path = Path(tracker.blobs.path_of(model_file.digest))
    path.chmod(0o644)
    path.write_bytes(b"not the model")
    with pytest.raises(StoreCorrupt, match="no longer matches its hash"):
        loopml.models.load("fraud@v1")


def test_download_gives_manifest_and_files(tracker: Tracker, tmp_path: Path) -> None:
    x, _ = data()
    loopml.models.register("fraud", fitted(), sample=x)
    target = loopml.models.download("fraud@v1", tmp_path / "pkg")
    names = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert "loopml-model.yaml" in names
    assert "input_example.json" in names
    assert any(n.startswith("model/") for n in names)


def test_gc_keeps_registered_packages(tracker: Tracker) -> None:
    x, _ = data()
    version = loopml.models.register("fraud", fitted(), sample=x).version
    loopml.Client(tracker).gc(blob_grace_s=0)
    assert loopml.models.load("fraud@v1") is not None
    assert tracker.blobs.exists(version.package_digest)


def test_a_verified_onnx_copy_is_kept_and_served(tracker: Tracker) -> None:
    x, _ = data()
    loopml.models.register("fraud", fitted(), sample=x)
    manifest = loopml.models.manifest("fraud@v1")
    assert manifest["onnx"]["kept"] is True
    assert "onnx/model.onnx" in manifest["files"]
    served = loopml.models.load("fraud@v1", serving=True)
    native = loopml.models.load("fraud@v1")
    assert type(served).__name__.startswith("Onnx")
    assert (served.predict(x) == native.predict(x)).all()
    assert np.allclose(served.predict_proba(x), native.predict_proba(x), atol=1e-5)


def test_a_scikit_learn_version_mismatch_is_warned_with_both_versions(tracker: Tracker) -> None:
    from loopml.registry.loading import package_folder
    from loopml.registry.package import LibraryMismatch, load_from, read_manifest

    x, _ = data()
    version = loopml.models.register("fraud", fitted(), sample=x, onnx=False).version
    folder = package_folder(tracker, version)
    manifest = read_manifest(folder)
    manifest["libraries"] = {**manifest["libraries"], "scikit-learn": "0.24.2"}
    with pytest.warns(LibraryMismatch, match=r"0\.24\.2.*\d+\.\d+"):
        model = load_from(folder, manifest)
    assert (model.predict(x) == fitted().predict(x)).all()


def test_the_training_sample_profile_is_stored_as_the_monitoring_reference(tracker: Tracker) -> None:
    from loopml.registry.loading import reference_profile_of

    frame, _ = data(rows=200)
    registered = loopml.models.register("fraud", fitted(), sample=frame, tracker=tracker, onnx=False)
    profile = reference_profile_of(tracker, registered.version)
    assert profile is not None
    assert profile.rows == 200
    assert sorted(profile.columns) == sorted(frame.columns)
    numeric = profile.columns[frame.columns[0]]
    assert numeric.mean == pytest.approx(frame[frame.columns[0]].mean())
    bare = loopml.models.register("bare", fitted(1), tracker=tracker, onnx=False)  # no sample: no reference
    assert reference_profile_of(tracker, bare.version) is None
