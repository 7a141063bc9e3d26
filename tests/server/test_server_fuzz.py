"""Every route of the team server fuzzed from its own `/openapi.json` (bounded, derandomized): never a 5xx,
every error a JSON object with a message. Path parameters are sometimes pinned to things that exist (a model, a
run, a blob), so generated bodies reach the routes' own checks instead of stopping at "not found"."""

from __future__ import annotations

import collections

import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import loopml
from fuzzing import fuzz
from loopml.server.accounts import AccountStore
from loopml.tracking.tracker import Tracker

EXAMPLES = 12  # per operation, mode and path choice


def test_no_team_server_route_answers_5xx_or_a_non_json_error(server: str, tracker: Tracker) -> None:
    token = AccountStore(tracker.stores.db).create_admin("ana")
    with loopml.start_run(experiment="fuzz", tracker=tracker) as run:
        run.log_metric("loss", 0.5)
    digest = tracker.blobs.put_bytes(b"fuzz")
    existing = {
        "name": "fraud",
        "ref": "fraud@v1",
        "alias": "champion",
        "run_id": run.run_id,
        "experiment": "fuzz",
        "key": "loss",
        "digest": digest,
    }
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    for operation in operations:
        names = {parameter.name for parameter in operation.path_parameters}
        pinned = {k: v for k, v in existing.items() if k in names}
        for mode in GenerationMode:
            for choice in [None, pinned] if pinned else [None]:
                strategy = operation.as_strategy(mode, path_parameters=choice)
                try:
                    fuzz(strategy, server, seen, examples=EXAMPLES, headers=headers)
                except Unsatisfiable:  # nothing to break in a route without parameters or body
                    assert mode is GenerationMode.NEGATIVE
    assert {label for label, _ in seen} == {operation.label for operation in operations}
    statuses = {status for _, status in seen}
    assert {200, 400, 404} <= statuses
    assert seen[("POST /api/v1/runs/{run_id}/log", 400)] > 0  # bodies reached the routes' checks
