"""Canary and shadow rollouts driven by the controller: promoted on good evidence, rolled back on a
regression or when a server cut the challenger, and resumed by another controller after a crash."""

from __future__ import annotations

import pytest
from automation_helpers import champion, traffic

from conftest import Project
from loopml.automation.store import AutomationStore
from loopml.automation.triggers import request_manual
from loopml.registry.deployments import DeploymentStore
from loopml.registry.store import RegistryStore

CANARY = """
[models.toy.automation.rollout]
strategy = "canary"
share = 0.3
min_requests = 40
min_minutes = 10
max_error_rate = 0.1
max_metric_drop = 0.05
"""


def _start_canary(project: Project) -> None:
    project.policy(CANARY)
    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    outcome = project.controller().tick()[0]
    assert (outcome.action, outcome.phase) == ("rollout", "rollout"), outcome
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert (deployment.mode, deployment.challenger, deployment.share) == ("canary", "challenger", 0.3)
    assert deployment.limits["max_error_rate"] == 0.1
    assert RegistryStore(project.tracker.stores.db).get_model("toy").aliases == {
        "champion": 1,
        "challenger": 2,
    }


def test_a_better_challenger_is_canaried_then_promoted(project: Project) -> None:
    _start_canary(project)
    start = project.clock()
    traffic(project, version=2, route="challenger", rows=20, time_ms=start + 1000, accuracy=0.9)
    traffic(project, version=1, route="champion", rows=40, time_ms=start + 1000, accuracy=0.7)
    project.clock.advance(minutes=5)
    waiting = project.controller().tick()[0]
    assert (waiting.action, waiting.phase) == ("waiting", "rollout")
    assert "20 of 40" in waiting.message
    traffic(project, version=2, route="challenger", rows=30, time_ms=start + 200_000, accuracy=0.9)
    project.clock.advance(minutes=6)
    outcome = project.controller().tick()[0]
    assert (outcome.action, outcome.phase) == ("promoted", "idle"), outcome
    assert champion(project) == 2
    assert "challenger" not in RegistryStore(project.tracker.stores.db).get_model("toy").aliases
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert deployment.mode == "single"
    promoted = AutomationStore(project.tracker.stores.db).events("toy", kinds=["promoted"])[-1]
    canary = promoted.detail["canary"]
    assert canary["challenger"]["requests"] == 50
    assert canary["labelled"]["metric"] == "accuracy"


def test_a_canary_with_too_many_errors_is_rolled_back(project: Project) -> None:
    _start_canary(project)
    start = project.clock()
    traffic(project, version=2, route="challenger", rows=40, failed=20, time_ms=start + 1000)
    project.clock.advance(minutes=2)
    outcome = project.controller().tick()[0]
    assert (outcome.action, outcome.phase) == ("rolled_back", "idle"), outcome
    assert "error rate" in outcome.message
    assert champion(project) == 1
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert (deployment.mode, deployment.challenger) == ("single", None)
    assert "challenger" not in RegistryStore(project.tracker.stores.db).get_model("toy").aliases


def test_a_canary_whose_labelled_accuracy_regresses_is_rolled_back(project: Project) -> None:
    _start_canary(project)
    start = project.clock()
    traffic(project, version=2, route="challenger", rows=40, time_ms=start + 1000, accuracy=0.55)
    traffic(project, version=1, route="champion", rows=60, time_ms=start + 1000, accuracy=0.95)
    project.clock.advance(minutes=11)
    outcome = project.controller().tick()[0]
    assert outcome.action == "rolled_back", outcome
    assert "labelled traffic" in outcome.message
    rolled = AutomationStore(project.tracker.stores.db).events("toy", kinds=["rolled_back"])[-1]
    assert rolled.detail["evidence"]["labelled"]["drop"] > 0.05


def test_a_challenger_a_server_cut_is_rolled_back_with_the_servers_evidence(project: Project) -> None:
    _start_canary(project)
    store = DeploymentStore(project.tracker.stores.db)
    current = store.get("toy")
    assert current is not None
    from dataclasses import replace

    store.set(
        replace(current, share=0.0),
        user="server",
        kind="limit_breached",
        detail={"reason": "error rate 40% over 10%"},
        expected_revision=current.revision,
    )
    outcome = project.controller().tick()[0]
    assert outcome.action == "rolled_back"
    assert "a server cut the challenger" in outcome.message
    assert champion(project) == 1


def test_a_person_changing_the_deployment_takes_over_from_the_loop(project: Project) -> None:
    _start_canary(project)
    import loopml

    loopml.models.deploy("toy", reason="I'll take it from here", tracker=project.tracker)
    outcome = project.controller().tick()[0]
    assert outcome.action == "superseded"
    assert champion(project) == 1


def test_a_shadow_rollout_compares_both_versions_on_the_same_requests(project: Project) -> None:
    project.policy(CANARY.replace('"canary"', '"shadow"').replace("share = 0.3", "share = 1.0"))
    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    assert project.controller().tick()[0].action == "rollout"
    start = project.clock()
    traffic(project, version=1, route="champion", rows=50, time_ms=start + 1000, accuracy=0.8, prefix="req")
    traffic(project, version=2, route="shadow", rows=50, time_ms=start + 1000, prefix="req")
    project.clock.advance(minutes=11)
    outcome = project.controller().tick()[0]
    assert outcome.action in ("promoted", "rolled_back"), outcome
    evidence = AutomationStore(project.tracker.stores.db).events("toy")[-1].detail
    labelled = (evidence.get("canary") or evidence.get("evidence"))["labelled"]
    assert labelled["same_requests"] is True
    assert labelled["labelled_rows"] == {"champion": 50, "challenger": 50}


def test_a_controller_that_died_mid_promotion_is_finished_by_the_next_one(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start_canary(project)
    start = project.clock()
    traffic(project, version=2, route="challenger", rows=50, time_ms=start + 1000)
    project.clock.advance(minutes=11)
    from loopml.automation import rollout

    def crash(step: object) -> None:
        raise SystemExit("killed between moving the champion and restoring the deployment")

    monkeypatch.setattr(rollout, "_finish", crash)
    with pytest.raises(SystemExit):
        project.controller(lease_s=60).tick()
    monkeypatch.undo()
    assert champion(project) == 2
    assert AutomationStore(project.tracker.stores.db).state("toy").phase == "promoting"
    project.clock.advance(minutes=2)
    outcome = project.controller().tick()[0]
    assert (outcome.phase, outcome.action) == ("idle", "promoted")
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert deployment.mode == "single"
    assert "challenger" not in RegistryStore(project.tracker.stores.db).get_model("toy").aliases


def test_a_training_that_finished_as_its_controller_died_is_taken_over_not_rerun(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.automation.controller import Step

    project.policy("retries = 1\nretry_delay_minutes = 0")
    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())

    def die(self: Step, *args: object) -> None:
        raise SystemExit("killed right after the pipeline run returned")

    monkeypatch.setattr(Step, "trained", die)
    with pytest.raises(SystemExit):
        project.controller().tick()
    monkeypatch.undo()
    assert AutomationStore(project.tracker.stores.db).state("toy").phase == "training"
    project.clock.advance(minutes=10)  # past the lease
    outcome = project.controller().tick()[0]
    assert outcome.action == "promoted", outcome
    assert project.kinds().count("training_started") == 1
    assert champion(project) == 2


def test_a_champion_moved_under_a_canary_ends_the_canary_it_no_longer_watches(project: Project) -> None:
    import loopml

    _start_canary(project)
    loopml.models.set_alias("toy", "champion", 2, reason="by hand", tracker=project.tracker)
    start = project.clock()
    traffic(project, version=2, route="challenger", rows=50, time_ms=start + 1000)
    project.clock.advance(minutes=11)
    outcome = project.controller().tick()[0]
    assert outcome.action == "superseded", outcome
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert deployment.mode == "single"
    assert "challenger" not in RegistryStore(project.tracker.stores.db).get_model("toy").aliases


def test_a_direct_promotion_leaves_a_persons_own_canary_alone(project: Project) -> None:
    import loopml

    loopml.models.set_alias("toy", "exp", 1, reason="an experiment", tracker=project.tracker)
    loopml.models.deploy("toy", challenger="exp", mode="canary", share=0.5, tracker=project.tracker)
    project.policy("")
    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    assert project.controller().tick()[0].action == "promoted"
    deployment = DeploymentStore(project.tracker.stores.db).get("toy")
    assert deployment is not None
    assert (deployment.mode, deployment.challenger, deployment.share) == ("canary", "exp", 0.5)
