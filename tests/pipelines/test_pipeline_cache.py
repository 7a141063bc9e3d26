"""Caching: a re-run is served from the cache, and each part of the cache key invalidates it on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pipeline_modules import ModuleFiles

import loopml
from loopml.pipelines.cache_key import canonical
from loopml.pipelines.explain import explain
from loopml.pipelines.records import CacheState, StepStatus
from loopml.pipelines.store import pipeline_store
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server

SOURCE = """
    import loopml
    import MOD_helpers

    @loopml.step
    def load(n: int) -> list:
        return list(range(n))

    @loopml.step
    def scale(values: list, factor: float = 2.0) -> list:
        # a comment
        return [MOD_helpers.adjust(v) * factor for v in values]

    @loopml.step
    def total(values: list) -> float:
        return float(sum(values))

    @loopml.pipeline(executor="inline")
    def flow(n: int = 4, factor: float = 2.0):
        values = load(n)
        return total(scale(values, factor=factor))
"""
HELPERS = """
    def adjust(v):
        return v + 1
"""


def statuses(result: Any) -> dict[str, str]:
    return {s.node: s.status.value for s in result.record.steps}


def why(tracker: Tracker, run_id: str, node: str) -> list[str]:
    return list(explain(pipeline_store(tracker), run_id, node).reasons)


@pytest.fixture
def flow(modules: ModuleFiles, tracker: Tracker) -> Any:
    modules.write("helpers", HELPERS)
    return modules.write("flow", SOURCE)


def test_rerun_is_fully_cached_and_gives_the_same_value(flow: Any, tracker: Tracker) -> None:
    first = flow.flow.run()
    assert first.value == 20.0
    assert statuses(first) == {"load": "finished", "scale": "finished", "total": "finished"}
    second = flow.flow.run()
    assert second.value == 20.0
    assert statuses(second) == {"load": "cached", "scale": "cached", "total": "cached"}
    assert all(s.cache is CacheState.HIT for s in second.record.steps)
    assert second.record.step("total").cached_from == first.record.step("total").run_id
    assert why(tracker, second.run_id, "scale")[0].startswith("cached")


def test_a_param_change_reruns_only_the_steps_that_read_it(flow: Any, tracker: Tracker) -> None:
    flow.flow.run()
    second = flow.flow.run({"factor": 3.0})
    assert statuses(second) == {"load": "cached", "scale": "finished", "total": "finished"}
    assert second.value == 30.0
    assert why(tracker, second.run_id, "scale") == ["ran: param 'factor' changed: 2.0 -> 3.0"]
    assert why(tracker, second.run_id, "total")[0].startswith("ran: input 'values' changed")


def test_params_are_type_tagged_so_equal_looking_values_differ() -> None:
    forms = [canonical(v, lambda _: None) for v in (1, 1.0, True, "1", [1], (1,), {"a": 1})]
    assert len({json.dumps(f, sort_keys=True) for f in forms}) == len(forms)


def test_an_int_for_a_float_param_is_the_same_param(flow: Any) -> None:
    flow.flow.run({"factor": 2.0})
    assert statuses(flow.flow.run({"factor": 2}))["scale"] == "cached"  # converted to 2.0 by the signature


def test_comment_and_docstring_edits_keep_the_cache(flow: Any, modules: ModuleFiles) -> None:
    flow.flow.run()
    edited = modules.write("flow", SOURCE.replace("# a comment", "# another comment\n        '''doc'''"))
    assert set(statuses(edited.flow.run()).values()) == {"cached"}


def test_a_code_change_reruns_that_step_and_says_so(
    flow: Any, modules: ModuleFiles, tracker: Tracker
) -> None:
    flow.flow.run()
    edited = modules.write(
        "flow", SOURCE.replace("return float(sum(values))", "return float(sum(values)) + 1")
    )
    second = edited.flow.run()
    assert statuses(second) == {"load": "cached", "scale": "cached", "total": "finished"}
    assert second.value == 21.0
    reasons = why(tracker, second.run_id, "total")
    assert reasons == [f"ran: code changed: {modules.prefix}flow:total"]


def test_a_change_in_a_called_helper_module_reruns_the_caller(
    flow: Any, modules: ModuleFiles, tracker: Tracker
) -> None:
    flow.flow.run()
    modules.write("helpers", HELPERS.replace("v + 1", "v + 2"))
    edited = modules.reimport("flow")
    second = edited.flow.run()
    assert statuses(second) == {"load": "cached", "scale": "finished", "total": "finished"}
    assert any(f"{modules.prefix}helpers" in line for line in why(tracker, second.run_id, "scale"))


def test_same_output_from_a_rerun_step_keeps_downstream_cached(flow: Any, modules: ModuleFiles) -> None:
    flow.flow.run()
    # `load` changes code but not its output: `scale` and `total` see the same content hash.
    edited = modules.write("flow", SOURCE.replace("return list(range(n))", "return [i for i in range(n)]"))
    assert statuses(edited.flow.run()) == {"load": "finished", "scale": "cached", "total": "cached"}


def test_environment_change_reruns(flow: Any, monkeypatch: pytest.MonkeyPatch, tracker: Tracker) -> None:
    flow.flow.run()
    import loopml.pipelines.keys as keys

    real = keys.environment_fingerprint

    def upgraded(*args: Any, **kwargs: Any) -> dict[str, str]:
        return {**real(*args, **kwargs), "python": "CPython 9.9.9"}

    monkeypatch.setattr(keys, "environment_fingerprint", upgraded)
    second = flow.flow.run()
    assert set(statuses(second).values()) == {"finished"}
    assert any("environment 'python' changed" in line for line in why(tracker, second.run_id, "load"))


def test_salt_and_opt_out(modules: ModuleFiles, tracker: Tracker) -> None:
    source = """
        import loopml

        @loopml.step(cache_salt="SALT")
        def salted() -> int:
            return 1

        @loopml.step(cache=False)
        def never_cached() -> int:
            return 2

        @loopml.pipeline(executor="inline")
        def flow():
            return [salted(), never_cached()]
    """
    module = modules.write("salty", source.replace("SALT", "v1"))
    assert module.flow.run().value == [1, 2]
    again = module.flow.run()
    assert statuses(again) == {"salted": "cached", "never_cached": "finished"}
    assert why(tracker, again.run_id, "never_cached") == ["not cached: the step opted out (cache=False)"]
    resalted = modules.write("salty", source.replace("SALT", "v2"))
    third = resalted.flow.run()
    assert statuses(third)["salted"] == "finished"
    assert why(tracker, third.run_id, "salted") == ["ran: cache salt changed: 'v1' -> 'v2'"]


@pytest.mark.single_executor  # the argument holds a lock, which cannot leave the process
def test_an_argument_without_a_content_hash_disables_caching_and_says_why(
    modules: ModuleFiles, tracker: Tracker
) -> None:
    module = modules.write(
        "opaque",
        """
        import threading
        import loopml

        @loopml.step
        def use(lock) -> int:
            return 1

        @loopml.pipeline(executor="inline")
        def flow():
            return use(threading.Lock())
        """,
    )
    result = module.flow.run()
    step = result.record.step("use")
    assert step.cache is CacheState.UNAVAILABLE
    assert "argument 'lock'" in (step.cache_note or "")
    assert "lock" in (step.cache_note or "").lower()
    assert module.flow.run().record.step("use").status is StepStatus.FINISHED


@pytest.mark.embedded_only  # deletes blobs from the store, which only the server can reach
def test_deleted_outputs_are_not_served_from_the_cache(flow: Any, tracker: Tracker) -> None:
    first = flow.flow.run()
    for output in first.record.step("total").outputs:
        tracker.blobs.delete(output.digest)
    assert statuses(flow.flow.run())["total"] == "finished"


def test_a_new_serializer_changes_keys(flow: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    flow.flow.run()
    import loopml.pipelines.keys as keys

    names = keys.default_registry.names()
    monkeypatch.setattr(keys.default_registry, "names", lambda: [*names, "custom@1"])
    assert set(statuses(flow.flow.run()).values()) == {"finished"}


def test_a_retrained_identical_model_keeps_downstream_cached(modules: ModuleFiles, tracker: Tracker) -> None:
    module = modules.write(
        "models",
        """
        import loopml
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        @loopml.step(cache=False)  # re-fits every time; skops bytes differ, the canonical hash does not
        def fit(seed: int):
            rng = np.random.default_rng(seed)
            x = rng.normal(size=(60, 3))
            return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))

        @loopml.step
        def coefficients(model) -> list:
            return [round(float(c), 6) for c in model.coef_[0]]

        @loopml.pipeline(executor="inline")
        def flow(seed: int = 0):
            return coefficients(fit(seed))
        """,
    )
    first = module.flow.run()
    again = module.flow.run()
    assert statuses(again) == {"fit": "finished", "coefficients": "cached"}
    assert again.value == first.value
    assert statuses(module.flow.run({"seed": 1})) == {"fit": "finished", "coefficients": "finished"}


def test_changing_declared_outputs_never_serves_the_old_ones(modules: ModuleFiles, tracker: Tracker) -> None:
    source = """
        import loopml

        @loopml.step(OUTPUTS)
        def split() -> tuple:
            return (1, 10)

        @loopml.step
        def first(x: int) -> int:
            return x

        @loopml.pipeline(executor="inline")
        def flow():
            FLOW
    """
    single = modules.write("outs", source.replace("OUTPUTS", "").replace("FLOW", "return split()"))
    assert single.flow.run().value == (1, 10)
    named = modules.write(
        "outs",
        source.replace("OUTPUTS", 'outputs=("small", "big")').replace(
            "FLOW", "s, b = split(); return first(b)"
        ),
    )
    assert named.flow.run().value == 10
    swapped = modules.write(
        "outs",
        source.replace("OUTPUTS", 'outputs=("big", "small")').replace(
            "FLOW", "b, s = split(); return first(s)"
        ),
    )
    result = swapped.flow.run()
    assert result.value == 10  # "small" is now the second item: 10
    assert result.record.step("split").status.value == "finished"


def test_purging_a_pipeline_run_drops_its_step_records_and_gc_its_outputs(
    flow: Any, tracker: Tracker
) -> None:
    from loopml.core.errors import NotFound
    from loopml.tracking.client import Client

    first = flow.flow.run()
    client = Client(tracker)
    for step in first.record.steps:
        client.delete_run(step.run_id or "")
    client.delete_run(first.run_id)
    report = client.gc(blob_grace_s=0)
    assert first.run_id in report.purged_runs
    assert (
        report.removed_blobs >= 3
    )  # the three steps' outputs (and their logs) were referenced by nothing else
    with pytest.raises(NotFound):
        pipeline_store(tracker).get_run(first.run_id)
    assert set(statuses(flow.flow.run()).values()) == {"finished"}


@loopml.step
def logs_a_metric(x: int) -> int:
    loopml.log_metric("seen", float(x))
    return x


def test_a_step_that_logs_is_served_from_the_cache_on_the_next_run_in_the_same_process(
    tracker: Tracker,
) -> None:
    """LoopML's own module state (the metric names it has checked) once entered the key of any step that
    logs, when LoopML was installed in editable mode: the second run in a process always missed."""

    @loopml.pipeline
    def flow(x: int = 1) -> Any:
        return logs_a_metric(x)

    flow.run({"x": 2})
    again = flow.run({"x": 2})
    assert again.record.step("logs_a_metric").status is StepStatus.CACHED
