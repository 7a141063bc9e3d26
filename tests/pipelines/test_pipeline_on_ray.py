"""Pipelines on the Ray executor: what only a cluster executor does (the rest of the suite runs on Ray too).

A worker killed mid-step is retried per the step's policy and the run records why; resource hints reach
Ray; a worker reads its inputs from and writes its outputs to the blob store, and its tracking writes are
replayed by the driver.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

import loopml
from loopml.core.errors import ParamConflict
from loopml.core.settings import Settings
from loopml.pipelines.execution import StepRun, StoredInput, execute_step, worker_settings
from loopml.pipelines.library import load_dataset
from loopml.pipelines.records import OutputRef, StepStatus
from loopml.pipelines.serializers import serialize
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker

pytestmark = [pytest.mark.single_executor, pytest.mark.usefixtures("ray_cluster")]


@loopml.step(retries=2, retry_delay_s=0.1, cache=False)
def dies_once(marker: str) -> int:
    if not Path(marker).exists():
        Path(marker).write_text("the first attempt was here")
        loopml.log_metric("progress", 0.5, step=1)
        time.sleep(2.0)  # the journal is posted every 0.5 s while the step runs
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    loopml.log_metric("survived", 1.0)
    return os.getpid()


@loopml.step(retries=1, retry_delay_s=0.1, cache=False)
def always_dies() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@loopml.step(resources={"cpu": 2, "memory": "64MB"})
def reserved() -> dict:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@loopml.step(resources={"cpu": 16})
def greedy() -> int:
    return 1


@loopml.step(cache=False)
def logs_then_fails() -> int:
    loopml.log_param("before_failure", "yes")
    loopml.log_metric("loss", 0.5, step=1)
    raise ValueError("broken after logging")


@loopml.step(cache=False)
def logs_a_param_twice() -> str:
    loopml.log_param("lr", 0.1)
    try:
        loopml.log_param("lr", 0.2)
    except ParamConflict:
        return "refused where it was logged"
    return "accepted"


@loopml.step(cache=False)
def nests_a_run() -> int:
    with loopml.start_run(nested=True):
        return 1


@loopml.step(cache=False, resources={"cpu": 2}, timeout_s=3.5)
def holds_the_cluster(n: int) -> int:
    import time

    time.sleep(2.0)
    return n


@loopml.step(cache=False, timeout_s=4.0)
def logs_then_hangs() -> int:
    loopml.log_param("lr", 0.1)
    for epoch in range(3):
        loopml.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    time.sleep(600)
    return 0


@loopml.step(cache=False)
def reads_the_dataset(data: loopml.DatasetRef) -> tuple[int, int]:
    return len(data.load()), os.getpid()


@loopml.step(cache=False)
def lists_the_folder(data: loopml.DatasetRef) -> list[str]:
    return sorted(path.name for path in Path(data.load()).iterdir())


@loopml.step
def make_array() -> Any:
    return np.arange(5)


@loopml.step
def zero_first(values: Any) -> Any:
    values[0] = -1  # its own copy: the sibling below must not see it
    return values


@loopml.step
def total(values: Any) -> int:
    return int(values.sum())


@loopml.step
def logs_everything(x: int) -> int:
    loopml.log_param("kind", "demo")
    loopml.set_tag("stage", "train")
    for step in range(3):
        loopml.log_metric("loss", 1.0 / (step + 1), step=step)
    run = loopml.active_run()
    assert run is not None
    run.log_text("hello", "notes/hello.txt")
    return x + 1


def failed_run(pipeline: Any, tracker: Tracker, match: str) -> Any:
    """The record of a run of `pipeline` that must fail with an error matching `match`."""
    with pytest.raises(loopml.PipelineFailed, match=match) as failure:
        pipeline.run()
    return loopml.pipelines.store.pipeline_store(tracker).get_run(failure.value.run_id)


def test_a_worker_killed_mid_step_is_retried_and_the_run_records_it(tracker: Tracker, tmp_path: Path) -> None:
    @loopml.pipeline(executor="ray")
    def flow(marker: str) -> Any:
        return dies_once(marker)

    result = flow.run({"marker": str(tmp_path / "marker")})
    assert result.value != os.getpid()  # it ran in a Ray worker
    step = result.record.step("dies_once")
    assert step.status is StepStatus.FINISHED
    assert step.attempts == 2
    run = Client(tracker).get_run(step.run_id or "")
    assert run.tags["loopml.attempt.1.error"].startswith("WorkerLost: the Ray worker running the task died")
    assert run.metrics == {"survived": 1.0, "progress": 0.5}  # what the killed attempt logged is kept

    @loopml.pipeline(executor="ray")
    def doomed() -> Any:
        return always_dies()

    record = failed_run(doomed, tracker, "WorkerLost")
    assert record.step("always_dies").attempts == 2


def test_resource_hints_reach_ray_and_impossible_ones_fail_the_step(tracker: Tracker) -> None:
    @loopml.pipeline(executor="ray")
    def flow() -> Any:
        return reserved()

    assert flow.run().value == {"CPU": 2.0, "memory": 64_000_000.0}

    @loopml.pipeline(executor="ray")
    def too_big() -> Any:
        return greedy()

    with pytest.raises(
        loopml.PipelineFailed, match=r"step .*:greedy asks for 16 CPU, but the Ray cluster has 2 CPU"
    ):
        too_big.run()


def test_each_worker_gets_its_own_copy_of_its_inputs(tracker: Tracker) -> None:
    @loopml.pipeline(executor="ray")
    def flow() -> Any:
        values = make_array()
        return [total(zero_first(values)), total(values)]

    assert flow.run().value == [9, 10]


def test_tracking_inside_a_ray_step_lands_in_its_run(tracker: Tracker) -> None:
    @loopml.pipeline(executor="ray")
    def flow() -> Any:
        return logs_everything(1)

    result = flow.run()
    client = Client(tracker)
    run = client.get_run(result.record.step("logs_everything").run_id or "")
    assert run.params == {"x": "1", "kind": "demo"}
    assert run.tags["stage"] == "train"
    history = client.get_metric_history(run.run_id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    paths = {a.path: a for a in client.list_artifacts(run.run_id)}
    assert tracker.blobs.get_bytes(paths["notes/hello.txt"].digest) == b"hello"


def test_a_cluster_worker_reads_and_writes_blobs_itself(tracker: Tracker, tmp_path: Path) -> None:
    """What a Ray worker does, run here: inputs by reference, outputs stored, only references sent back."""
    stored = serialize([1, 2, 3])
    digest = tracker.blobs.put_bytes(stored.data)
    ref = OutputRef(
        "output", digest, stored.content_hash, stored.serializer, stored.python_type, len(stored.data)
    )
    run = tracker.store.create_run(tracker.store.get_or_create_experiment("x").experiment_id, name="call")
    settings: Settings = tracker.settings
    result = execute_step(
        logs_everything, (), {"x": StoredInput(ref)}, context=StepRun(run, None, settings, remote=True)
    )
    assert result.error is not None  # x is a list here: list + 1 fails, and the error comes back
    assert "TypeError" in (result.traceback or "")
    result = execute_step(
        zero_first, (StoredInput(ref),), {}, context=StepRun(run, None, settings, remote=True)
    )
    assert result.error is None, result.traceback
    assert result.stored == {}  # no bytes travel back
    assert result.refs is not None
    output = result.refs["output"]
    assert tracker.blobs.exists(output.digest)
    assert tracker.blobs.get_bytes(output.digest) == serialize([-1, 2, 3]).data
    assert tracker.blobs.get_bytes(digest) == stored.data  # the input blob is untouched


def test_what_a_failing_ray_step_logged_is_kept_and_conflicts_are_raised_where_logged(
    tracker: Tracker,
) -> None:
    @loopml.pipeline(executor="ray")
    def failing() -> Any:
        return logs_then_fails()

    record = failed_run(failing, tracker, "broken after logging")
    run = Client(tracker).get_run(record.step("logs_then_fails").run_id or "")
    assert run.params == {"before_failure": "yes"}  # as a local executor keeps them
    assert run.metrics == {"loss": 0.5}

    @loopml.pipeline(executor="ray")
    def twice() -> Any:
        return logs_a_param_twice()

    assert twice.run().value == "refused where it was logged"

    @loopml.pipeline(executor="ray")
    def nested() -> Any:
        return nests_a_run()

    with pytest.raises(loopml.PipelineFailed, match="can only log to its own run"):
        nested.run()


def test_what_a_step_logged_before_it_was_killed_for_its_timeout_is_kept(tracker: Tracker) -> None:
    @loopml.pipeline(executor="ray")
    def flow() -> Any:
        return logs_then_hangs()

    record = failed_run(flow, tracker, "ran longer than its timeout")
    client = Client(tracker)
    run = client.get_run(record.step("logs_then_hangs").run_id or "")
    assert run.params == {"lr": "0.1"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "loss")] == [
        (0, 1.0),
        (1, 0.5),
        (2, 1.0 / 3),
    ]


def test_a_worker_loads_the_dataset_version_its_pipeline_resolved_from_the_blob_store(
    tracker: Tracker,
) -> None:
    loopml.datasets.add("rows", pd.DataFrame({"x": range(40), "y": [0, 1] * 20}), tracker=tracker)

    @loopml.pipeline(executor="ray")
    def flow(data: loopml.DatasetRef = "rows@latest") -> Any:  # type: ignore[assignment]
        return [reads_the_dataset(data), load_dataset(data)]

    result = flow.run()
    (count, pid), frame = result.value
    assert count == 40
    assert pid != os.getpid()  # read in a Ray worker, which cannot reach the catalog
    assert len(frame) == 40
    client = Client(tracker)
    for name in ("reads_the_dataset", "load_dataset"):
        inputs = client.list_inputs(result.record.step(name).run_id or "")
        assert [(i.dataset, i.version, i.context) for i in inputs] == [("rows", "v1", "training")]


def test_a_worker_restores_a_folder_version_and_loads_a_reference_the_user_built(
    tracker: Tracker, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(name)
    loopml.datasets.add("images", folder, tracker=tracker)
    rows = loopml.datasets.add("rows", pd.DataFrame({"x": range(3)}), tracker=tracker).version

    @loopml.pipeline(executor="ray")
    def flow(data: loopml.DatasetRef = "images@latest", table: loopml.DatasetRef = "rows@latest") -> Any:  # type: ignore[assignment]
        return [lists_the_folder(data), reads_the_dataset(table)]

    built = loopml.DatasetRef("rows", rows.version, rows.digest, rows.kind)  # without the version's record
    names, (count, _) = flow.run({"table": built}).value
    assert names == ["a.txt", "b.txt"]
    assert count == 3
    forged = loopml.DatasetRef("rows", rows.version, "0" * 64, rows.kind)
    with pytest.raises(loopml.InvalidInput, match="but rows@v1 in this project holds"):
        flow.run({"table": forged})


def test_a_step_timeout_counts_from_when_the_cluster_can_run_it(tracker: Tracker) -> None:
    """Both calls need the whole cluster: the second waits for the first, and its 3.5 s count only once it
    can start (2 s of work each; counted from submission, the second would need 4 s)."""

    @loopml.pipeline(executor="ray")
    def flow() -> Any:
        return [holds_the_cluster(1), holds_the_cluster(2)]

    assert flow.run().value == [1, 2]


def test_a_cluster_worker_is_sent_no_secret_it_does_not_need(tracker: Tracker) -> None:
    settings = tracker.settings.model_copy(
        update={"database_url": "postgresql+psycopg://u:hunter2@db/x", "token": SecretStr("lml_secret")}
    )
    sent = worker_settings(settings)
    assert sent.database_url is None
    assert sent.token is None
    assert sent.blob_url == settings.blob_url
    served = worker_settings(settings.model_copy(update={"tracking_uri": "http://127.0.0.1:1"}))
    assert served.token is not None  # a worker talking to a team server needs its token
    assert served.token.get_secret_value() == "lml_secret"


def test_a_worker_runs_the_current_code_of_a_helper_it_imported_itself(
    tracker: Tracker, modules: Any
) -> None:
    modules.write("helper", "VALUE = 'v1'\n")
    flow = modules.write(
        "flow",
        """
        import loopml

        @loopml.step(cache=False)
        def read() -> str:
            import MOD_helper  # imported in the worker only

            return MOD_helper.VALUE

        @loopml.pipeline(executor="ray")
        def flow():
            return read()
        """,
    )
    assert flow.flow.run().value == "v1"
    modules.write("helper", "VALUE = 'v2'  # edited\n")
    assert flow.flow.run().value == "v2"
