"""The loop, tick by tick on a hand-moved clock: triggers, guards, training failures, gates, direct promotion."""

from __future__ import annotations

from automation_helpers import champion

import loopml
from conftest import Project, toy_rows
from loopml.automation.store import AutomationStore
from loopml.registry.store import RegistryStore


def test_a_scheduled_retrain_runs_at_its_time_and_promotes_a_better_model(project: Project) -> None:
    project.policy(
        """
        [models.toy.automation.triggers]
        schedule = "0 2 * * *"
        """
    )
    controller = project.controller()
    assert controller.tick()[0].action == "nothing"  # the first look sets the cursors
    project.clock.advance(hours=1)
    assert controller.tick()[0].action == "nothing"  # 01:00: not yet
    project.clock.advance(hours=1, minutes=5)
    outcome = controller.tick()[0]
    assert outcome.action == "promoted", outcome
    assert champion(project) == 2
    assert project.kinds() == ["triggered", "training_started", "trained", "promoted"]
    events = AutomationStore(project.tracker.stores.db).events("toy")
    assert events[0].detail["triggers"][0]["kind"] == "schedule"
    assert events[2].run_id
    assert events[2].version == 2
    promoted = events[-1]
    compared = [g for g in promoted.detail["gates"] if g.get("gate") == "beats v1 on roc_auc"]
    assert compared
    assert compared[0]["passed"] is True
    history = RegistryStore(project.tracker.stores.db).history("toy", "champion")
    assert history[-1].to_version == 2
    assert history[-1].user
    assert "loopml-agent" in history[-1].user
    project.clock.advance(hours=1)
    assert controller.tick()[0].action == "nothing"  # fired once for 02:00, not again


def test_new_data_triggers_a_retrain_on_that_version(project: Project) -> None:
    project.policy(
        """
        [models.toy.automation.triggers]
        new_data = true
        """
    )
    controller = project.controller()
    controller.tick()
    loopml.datasets.add("toy", toy_rows(800, seed=2), tracker=project.tracker)
    outcome = controller.tick()[0]
    assert outcome.action == "promoted", outcome
    events = AutomationStore(project.tracker.stores.db).events("toy")
    assert events[0].detail["data"]["ref"] == "toy@v2"
    assert events[1].detail["params"]["data"] == "toy@v2"


def test_a_worse_challenger_is_refused_and_the_champion_stays(project: Project) -> None:
    loopml.models.set_alias("toy", "champion", 1, reason="setup", tracker=project.tracker)
    project.policy("params = { scrambled = true }")
    controller = project.controller()
    # A good champion first: trained by hand on fresh rows.
    loopml.datasets.add("toy", toy_rows(800, seed=3), tracker=project.tracker)
    from loopml.automation.controller import load_policy_pipeline

    load_policy_pipeline(project.folder, "toy_pipeline.py:train_toy").run(tracker=project.tracker)
    loopml.models.promote("toy", 2, tracker=project.tracker)
    loopml.datasets.add("toy", toy_rows(800, seed=4), tracker=project.tracker)
    from loopml.automation.triggers import request_manual

    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    outcome = controller.tick()[0]
    assert outcome.action == "refused", outcome
    assert champion(project) == 2
    assert project.kinds()[-1] == "refused"
    refusals = [e for e in RegistryStore(project.tracker.stores.db).history("toy") if e.outcome == "refused"]
    assert refusals
    assert refusals[-1].to_version == 3


def test_a_failed_training_is_retried_then_given_up_and_the_champion_stays(project: Project) -> None:
    project.policy(
        """
        params = { fail = true }
        retries = 1
        retry_delay_minutes = 10
        """
    )
    from loopml.automation.triggers import request_manual

    request_manual(project.tracker, "toy", reason="test", actor="me", now_ms=project.clock())
    controller = project.controller()
    first = controller.tick()[0]
    assert (first.action, first.phase) == ("failed", "retry")
    project.clock.advance(minutes=5)
    assert controller.tick()[0].action == "waiting"
    project.clock.advance(minutes=6)
    second = controller.tick()[0]
    assert (second.action, second.phase) == ("failed", "idle")
    assert champion(project) == 1
    failures = AutomationStore(project.tracker.stores.db).events("toy", kinds=["training_failed"])
    assert len(failures) == 2
    assert "the training data is broken" in failures[0].detail["error"]
    assert failures[1].detail["gave_up"] is True
    assert failures[0].run_id  # the failed pipeline run is linked


def test_guards_hold_automatic_triggers_back_but_not_a_manual_request(project: Project) -> None:
    project.policy(
        """
        [models.toy.automation.triggers]
        new_data = true
        [models.toy.automation.guards]
        min_new_rows = 1000
        """
    )
    controller = project.controller()
    controller.tick()
    loopml.datasets.add("toy", toy_rows(700, seed=5), tracker=project.tracker)
    outcome = controller.tick()[0]
    assert outcome.action == "held"
    assert "min_new_rows" in outcome.message
    from loopml.automation.triggers import request_manual

    request_manual(project.tracker, "toy", reason="ship it", actor="me", now_ms=project.clock())
    assert controller.tick()[0].action == "promoted"


def test_files_landing_in_a_folder_become_a_version_and_trigger_a_retrain(project: Project) -> None:
    incoming = project.folder / "incoming"
    incoming.mkdir()
    # Rows the champion never saw: accumulated files split at random would otherwise hold out some of its
    # training rows, which the gates refuse to score on (a time-based split avoids that with real data).
    toy_rows(600, seed=8).to_csv(incoming / "day1.csv", index=False)
    (project.folder / "loopml.toml").write_text(
        '[models.toy.automation]\npipeline = "toy_pipeline.py:train_toy"\n'
        'data = { dataset = "toy", path = "incoming/*.csv" }\n'
        "[models.toy.automation.triggers]\nnew_data = true\n"
    )
    controller = project.controller()
    assert controller.tick()[0].action == "nothing"  # the first look versions the files and sets the cursor
    toy_rows(500, seed=7).to_csv(incoming / "day2.csv", index=False)
    outcome = controller.tick()[0]
    assert outcome.action == "promoted", outcome
    triggered = AutomationStore(project.tracker.stores.db).events("toy", kinds=["triggered"])[0]
    assert triggered.detail["data"]["ref"] == "toy@v3"
    assert triggered.detail["data"]["rows"] == 1100
    assert controller.tick()[0].action == "nothing"  # unchanged files add no version


def test_a_data_path_outside_the_project_is_refused(project: Project) -> None:
    import pytest

    from loopml.automation.policy import policies
    from loopml.core.errors import InvalidInput

    (project.folder / "loopml.toml").write_text(
        '[models.toy.automation]\npipeline = "toy_pipeline.py:train_toy"\n'
        'data = { dataset = "toy", path = "../elsewhere/*.csv" }\n'
    )
    with pytest.raises(InvalidInput, match="must stay inside the project"):
        policies(project.folder)


def test_one_models_problem_does_not_stop_the_others(project: Project) -> None:
    project.policy("", extra='[models.ghost.automation]\npipeline = "toy_pipeline.py:train_toy"\n')
    from loopml.automation.triggers import request_manual

    request_manual(project.tracker, "toy", reason="go", actor="me", now_ms=project.clock())
    outcomes = {o.model: o for o in project.controller().tick()}
    assert outcomes["ghost"].action == "error"
    assert "no registered model 'ghost'" in outcomes["ghost"].message
    assert outcomes["toy"].action == "promoted"
