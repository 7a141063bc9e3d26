"""Deployments over real HTTP: canary (random and sticky), shadow, limits that take a challenger out, rollback."""

from __future__ import annotations

import time
from typing import Any

import pytest

import loopml
from conftest import LiveServer
from loopml.core.errors import Conflict, InvalidInput, NotFound
from loopml.registry.deployments import Deployment, DeploymentStore
from loopml.tracking.tracker import Tracker

ROW = {"amount": 120.0, "age": 30, "channel": "web"}


def versions_answering(live: LiveServer, requests: int, headers: dict[str, str] | None = None) -> list[str]:
    with live.client() as client:
        answers = [client.post("/predict/fraud", json=[ROW], headers=headers) for _ in range(requests)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    for answer in answers:  # the body and the headers agree on who answered
        assert str(answer.json()["model_version"]) == answer.headers["x-model-version"]
    return [a.headers["x-model-version"] for a in answers]


def test_a_canary_splits_traffic_and_a_sticky_key_keeps_a_caller_on_one_version(
    serve: Any, project: Tracker
) -> None:
    live: LiveServer = serve()
    assert set(versions_answering(live, 10)) == {"1"}
    loopml.models.deploy("fraud", challenger="challenger", mode="canary", share=0.5, tracker=project)
    live.app.state.server.pool.refresh()  # what the poller does every poll_s
    answered = versions_answering(live, 120)
    assert set(answered) == {"1", "2"}  # each side has probability 2**-120 of getting nothing
    with live.client() as client:
        roles = {client.post("/predict/fraud", json=[ROW]).headers["x-model-role"] for _ in range(40)}
    assert roles == {"champion", "challenger"}

    loopml.models.deploy(
        "fraud", challenger="challenger", mode="canary", share=0.5, sticky_key="X-Customer", tracker=project
    )
    live.app.state.server.pool.refresh()
    for customer in ("alice", "bob", "carol", "dave", "erin"):
        assert len(set(versions_answering(live, 8, {"X-Customer": customer}))) == 1
    with live.client() as client:
        deployment = client.get("/deployments/fraud").json()
    assert deployment["deployment"]["sticky_key"] == "X-Customer"
    assert deployment["versions"]["1"]["role"] == "champion"
    assert deployment["versions"]["2"]["role"] == "challenger"
    assert deployment["versions"]["1"]["requests"] + deployment["versions"]["2"]["requests"] >= 170


def test_shadow_answers_with_the_champion_and_runs_the_challenger_too(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve()
    loopml.models.deploy("fraud", challenger="challenger", mode="shadow", share=1.0, tracker=project)
    live.app.state.server.pool.refresh()
    assert set(versions_answering(live, 25)) == {"1"}
    deadline = time.monotonic() + 20
    with live.client() as client:
        while client.get("/deployments/fraud").json()["versions"]["2"]["requests"] < 25:
            assert time.monotonic() < deadline, "the shadow predictions did not run"
            time.sleep(0.02)


def test_a_challenger_over_its_limits_gets_share_zero_and_the_event_says_why(
    serve: Any, project: Tracker
) -> None:
    live: LiveServer = serve()
    limits = {"max_p99_ms": 0.000001, "min_requests": 5}  # no model answers in a nanosecond
    loopml.models.deploy(
        "fraud", challenger="challenger", mode="canary", share=1.0, limits=limits, tracker=project
    )
    live.app.state.server.pool.refresh()
    answered = versions_answering(live, 12)
    assert answered[:5] == ["2"] * 5  # the challenger takes all traffic until the limit is seen broken
    assert answered[-1] == "1"  # then the champion answers again: no request failed meanwhile
    deployment = loopml.models.deployment("fraud", tracker=project)
    assert deployment is not None
    assert deployment.share == 0.0
    assert deployment.updated_by == "loopml-serve"
    breach = loopml.models.deployment_history("fraud", tracker=project)[-1]
    assert breach.kind == "limit_breached"
    assert "p99 latency" in breach.detail["reason"]
    assert breach.detail["window"] >= 5


def test_rollback_by_deployment_or_by_alias_without_restart(serve: Any, project: Tracker) -> None:
    live: LiveServer = serve(poll_s=0.05)  # the real poller, no manual refresh
    loopml.models.deploy("fraud", challenger="challenger", mode="canary", share=1.0, tracker=project)
    _wait_for(live, "2")
    loopml.models.deploy("fraud", mode="single", reason="canary looked worse", tracker=project)
    _wait_for(live, "1")
    loopml.models.set_alias("fraud", "champion", 2, reason="promote", tracker=project)
    _wait_for(live, "2")
    loopml.models.set_alias("fraud", "champion", 1, reason="roll back", tracker=project)
    _wait_for(live, "1")
    history = loopml.models.deployment_history("fraud", tracker=project)
    assert [e.kind for e in history] == ["set", "set"]
    assert history[-1].detail["reason"] == "canary looked worse"


def _wait_for(live: LiveServer, version: str) -> None:
    deadline = time.monotonic() + 20
    with live.client() as client:
        while client.post("/predict/fraud", json=[ROW]).headers["x-model-version"] != version:
            assert time.monotonic() < deadline, f"v{version} never answered"
            time.sleep(0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "blue-green"}, "mode must be one of"),
        ({"mode": "canary", "share": 0.1}, "needs a challenger"),
        ({"challenger": "challenger", "mode": "canary", "share": 1.5}, "share must be a number from 0 to 1"),
        ({"challenger": "champion", "mode": "canary"}, "must differ"),
        ({"challenger": "challenger", "mode": "canary", "limits": {"max_errors": 1}}, "unknown limits"),
        ({"challenger": "challenger", "mode": "canary", "limits": {"max_p99_ms": -1}}, "non-negative"),
        ({"challenger": "no such alias!", "mode": "canary"}, "not a model reference"),
    ],
)
def test_bad_deployments_are_refused_and_nothing_is_written(
    project: Tracker, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        loopml.models.deploy("fraud", tracker=project, **kwargs)
    assert loopml.models.deployment("fraud", tracker=project) is None
    assert loopml.models.deployment_history("fraud", tracker=project) == []


def test_unknown_models_and_aliases_and_stale_revisions(project: Tracker) -> None:
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        loopml.models.deploy("nope", tracker=project)
    with pytest.raises(NotFound):
        loopml.models.deploy("fraud", challenger="staging", mode="shadow", share=1, tracker=project)
    first = loopml.models.deploy("fraud", challenger="challenger", mode="shadow", share=1, tracker=project)
    second = loopml.models.deploy("fraud", challenger="challenger", mode="canary", share=0.2, tracker=project)
    assert (first.revision, second.revision) == (1, 2)
    store = DeploymentStore(project.stores.db)
    with pytest.raises(Conflict, match="changed"):
        store.set(Deployment(model="fraud"), expected_revision=first.revision)
    assert store.get("fraud") == second
