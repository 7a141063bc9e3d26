"""The model registry against a team server: `loopml.models` with `LOOPML_TRACKING_URI` registers, loads,
promotes through the server's gates, moves aliases and sets deployments, each recorded with the token's user;
bad registrations are refused whole. Runs on SQLite and PostgreSQL over real HTTP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from server_helpers import client as _client
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import Forbidden, InvalidInput, NotFound
from loopml.core.settings import load_settings
from loopml.registry.deployments import DeploymentStore
from loopml.registry.gates import GatePolicy
from loopml.registry.promotion import PromotionRefused
from loopml.registry.store import RegistryStore
from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker


def _rows(seed: int, n: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return frame, (frame["a"] + 0.3 * frame["b"] > 0).to_numpy().astype(int)


def _token(remote: Tracker) -> str:
    assert remote.settings.token is not None
    return remote.settings.token.get_secret_value()


def test_a_model_registered_through_the_server_is_an_ordinary_version(
    remote: Tracker, tracker: Tracker
) -> None:
    X, y = _rows(0)
    model = LogisticRegression().fit(X, y)
    with loopml.start_run(experiment="spam", tracker=remote) as run:
        run.log_metric("auc", 0.91)
        registered = loopml.models.register("spam", model, sample=X, tracker=remote)
    assert registered.created
    assert registered.version.ref == "spam@v1"
    assert not loopml.models.register("spam", model, sample=X, tracker=remote).created
    on_server = RegistryStore(tracker.stores.db).get_version("spam@v1")
    assert (on_server.created_by, on_server.run_id, on_server.flavor) == ("ana", run.run_id, "sklearn")
    assert on_server.signature == registered.version.signature
    assert on_server.metrics["auc"] == 0.91
    loaded = loopml.models.load("spam@v1", tracker=remote)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loopml.models.manifest("spam", tracker=remote)["lineage"]["run_id"] == run.run_id
    assert [v.version for v in loopml.models.versions("spam", tracker=remote)] == [1]
    assert {m.name for m in loopml.models.models(tracker=remote)} == {"fraud", "churn", "spam"}
    # What the server holds, an embedded client on the server's stores reads the same.
    served = loopml.models.load("spam@v1", tracker=tracker)
    np.testing.assert_array_equal(served.predict(X), model.predict(X))
    with pytest.raises(NotFound):
        loopml.models.get("spam@v9", tracker=remote)


def test_promotion_runs_the_gates_on_the_server_and_a_refusal_keeps_the_champion(
    remote: Tracker, tracker: Tracker
) -> None:
    X, y = _rows(0)
    held_out, labels = _rows(1)
    loopml.datasets.add("holdout", held_out.assign(label=labels), tracker=tracker)  # the server's data
    good = LogisticRegression().fit(X, y)
    worse = LogisticRegression().fit(X, 1 - y)
    assert loopml.models.register("spam", good, sample=X, tracker=remote).version.version == 1
    assert loopml.models.register("spam", worse, sample=X, tracker=remote).version.version == 2
    promoted = loopml.models.promote("spam", 1, dataset="holdout@v1", target="label", tracker=remote)
    assert (promoted.event.to_version, promoted.event.user) == (1, "ana")
    assert promoted.evaluation == "dataset holdout@v1"  # no holder yet: nothing to be worse than
    with pytest.raises(PromotionRefused) as refused:
        loopml.models.promote("spam", 2, dataset="holdout@v1", target="label", tracker=remote)
    assert any(not g.passed for g in refused.value.gates)
    assert loopml.models.get("spam@champion", tracker=remote).version == 1
    events = loopml.models.history("spam", "champion", tracker=remote)
    assert [(e.outcome, e.to_version, e.user) for e in events] == [("moved", 1, "ana"), ("refused", 2, "ana")]
    scores = loopml.models.compare("spam", "v1", "v2", dataset="holdout@v1", target="label", tracker=remote)
    assert scores["v1"].metrics["accuracy"] > 0.9 > scores["v2"].metrics["accuracy"]
    with pytest.raises(PromotionRefused):  # rows sent with the request are scored on the server too
        loopml.models.promote("spam", 2, X=held_out, y=labels, tracker=remote)
    forced = loopml.models.promote("spam", 2, force=True, reason="incident drill", tracker=remote)
    assert forced.event.forced
    assert forced.event.user == "ana"


def test_aliases_and_deployments_through_the_server_record_the_token_user(
    remote: Tracker, tracker: Tracker
) -> None:
    loopml.models.set_alias("fraud", "staging", 1, reason="try it", tracker=remote)
    assert loopml.models.get("fraud@staging", tracker=remote).version == 1
    loopml.models.delete_alias("fraud", "staging", reason="done", tracker=remote)
    with pytest.raises(NotFound):
        loopml.models.get("fraud@staging", tracker=remote)
    events = RegistryStore(tracker.stores.db).history("fraud", "staging")
    assert [(e.outcome, e.user, e.reason) for e in events] == [
        ("moved", "ana", "try it"),
        ("removed", "ana", "done"),
    ]
    loopml.models.set_alias("fraud", "champion", 1, tracker=remote)
    deployed = loopml.models.deploy("fraud", limits={"max_error_rate": 0.05}, reason="limits", tracker=remote)
    assert deployed.updated_by == "ana"
    assert deployed.limits == {"max_error_rate": 0.05}
    assert loopml.models.deployment("fraud", tracker=remote) == DeploymentStore(tracker.stores.db).get(
        "fraud"
    )
    history = loopml.models.deployment_history("fraud", tracker=remote)
    assert [(e.user, e.detail["reason"]) for e in history] == [("ana", "limits")]
    with pytest.raises(InvalidInput):
        loopml.models.deploy("fraud", mode="sideways", tracker=remote)
    with pytest.raises(NotFound):
        loopml.models.deploy("fraud", challenger="v7", mode="canary", share=0.1, tracker=remote)
    assert loopml.models.deployment("churn", tracker=remote) is None


def test_bad_registrations_are_refused_whole(server: str, remote: Tracker, tracker: Tracker) -> None:
    fraud = RegistryStore(tracker.stores.db).get_version("fraud@v1")
    good = {"content_hash": "a" * 64, "package_digest": fraud.package_digest}
    with _client(server, _token(remote)) as ana:
        for bad in (
            {**good, "package_digest": "0" * 64},  # never uploaded
            {**good, "content_hash": 5},
            {**good, "package_digest": "../../etc/passwd"},
            {**good, "tags": {"k": 1}},
            {**good, "run_id": "0" * 32},
            good,  # fraud's package under another name
        ):
            answer = ana.post("/api/v1/models/spam/versions", json=bad)
            assert answer.status_code in (400, 404), (bad, answer.text)
            assert answer.json()["error"]
        assert ana.post("/api/v1/models/sp%20am@v2/versions", json=good).status_code == 400
        assert ana.get("/api/v1/model-versions/nope@v1").status_code == 404
        assert ana.get("/api/v1/model-versions/fraud@").status_code == 400
        assert ana.post("/api/v1/models/fraud/compare", json={"refs": []}).status_code == 400
        assert ana.post("/api/v1/models/fraud/promote", json={"version": "1"}).status_code == 400
        assert ana.put("/api/v1/models/fraud/deployment", json={"share": "half"}).status_code == 400
    assert {m.name for m in RegistryStore(tracker.stores.db).list_models()} == {"fraud", "churn"}
    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("rui")
    accounts.grant("rui", "reader")
    reader = Tracker(
        load_settings(
            project_dir=tracker.settings.project_dir,
            tracking_uri=server,
            token=accounts.token_for("rui", "t"),
        )
    )
    try:
        X, y = _rows(0)
        with pytest.raises(Forbidden, match="editor"):
            loopml.models.register("spam", LogisticRegression().fit(X, y), sample=X, tracker=reader)
        assert [v.version for v in loopml.models.versions("fraud", tracker=reader)] == [1]
    finally:
        reader.close()


def test_the_servers_gate_policy_cannot_be_relaxed_by_a_client(remote: Tracker, tracker: Tracker) -> None:
    X, y = _rows(0)
    held_out, labels = _rows(1)
    loopml.datasets.add("holdout", held_out.assign(label=labels), tracker=tracker)
    model = LogisticRegression().fit(X, y)
    loopml.models.register("spam", model, sample=X, tracker=remote)
    lenient = GatePolicy(thresholds={"accuracy": 0.5})
    strict = "[models.spam.gates.champion]\nthresholds = { accuracy = 0.9999 }\n"
    (tracker.settings.project_dir / "loopml.toml").write_text(strict)
    with pytest.raises(PromotionRefused, match="accuracy"):
        loopml.models.promote("spam", 1, policy=lenient, dataset="holdout@v1", target="label", tracker=remote)
    (tracker.settings.project_dir / "loopml.toml").unlink()
    done = loopml.models.promote(
        "spam", 1, policy=lenient, dataset="holdout@v1", target="label", tracker=remote
    )
    assert [g.passed for g in done.gates] == [True]
    with _client(remote.settings.tracking_uri or "", _token(remote)) as ana:
        for policy in ({"thresholds": {"accuracy": "high"}}, {"min_delta": True}, {"speed": 1}, [1]):
            body = {
                "version": 1,
                "alias": "staging",
                "policy": policy,
                "dataset": "holdout@v1",
                "target": "label",
            }
            answer = ana.post("/api/v1/models/spam/promote", json=body)
            assert answer.status_code == 400, (policy, answer.text)
