"""Running pipelines: the DAG from the data flow, tracking records, failures, retries, timeouts, resume."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipeline_modules import ModuleFiles

import loopml
from loopml.core.errors import InvalidInput
from loopml.pipelines.graph import GraphError, HandleMisuse, topological_order
from loopml.pipelines.records import StepStatus
from loopml.tracking.client import Client
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


@loopml.step
def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    return a + b


@loopml.step(outputs=("low", "high"))
def split(values: list) -> tuple[list, list]:
    middle = len(values) // 2
    return values[:middle], values[middle:]


@loopml.step
def count(values: list) -> int:
    return len(values)


@loopml.step
def gather(items: dict) -> dict:
    return items


def test_steps_form_a_dag_and_results_flow_through_containers(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow(x: int = 1) -> Any:
        first = add(x, 2)
        second = add(first, 10)  # a second call of the same step
        low, high = split([1, 2, 3, 4, 5])
        return gather({"sum": second, "parts": [count(low), count(high)], "pair": (first, x)})

    result = flow.run({"x": 5})
    assert result.value == {"sum": 17, "parts": [2, 3], "pair": (7, 5)}
    nodes = {s.node: s for s in result.record.steps}
    assert set(nodes) == {"add", "add#2", "split", "count", "count#2", "gather"}
    assert nodes["add#2"].upstream == ("add",)
    assert set(nodes["gather"].upstream) == {"add#2", "count", "count#2", "add"}
    assert flow(x=5) == result.value  # calling the pipeline returns its value


def test_each_step_is_a_child_run_with_params_outputs_and_logs(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow(x: int = 1) -> Any:
        return add(x, 2)

    result = flow.run({"x": 3})
    client = Client(tracker)
    parent = client.get_run(result.run_id)
    assert parent.params["x"] == "3"
    assert parent.status.value == "FINISHED"
    step = result.record.step("add")
    child = client.get_run(step.run_id or "")
    assert child.parent_run_id == result.run_id
    assert child.params == {"a": "3", "b": "2"}
    assert child.tags["loopml.step"].endswith(":add")
    paths = {a.path: a for a in client.list_artifacts(child.run_id)}
    assert set(paths) == {"outputs/output.json", "logs/step.log"}
    assert tracker.blobs.get_bytes(paths["logs/step.log"].digest).decode() == "adding 3 and 2\n"
    assert step.outputs[0].digest == paths["outputs/output.json"].digest


def test_handles_cannot_be_used_as_values(tracker: Tracker) -> None:
    @loopml.pipeline
    def branching() -> Any:
        total = add(1, 2)
        if total:
            return total
        return None

    with pytest.raises(HandleMisuse, match="step 'add'"):
        branching()

    @loopml.pipeline
    def arithmetic() -> Any:
        return add(1, 2) + 1

    with pytest.raises(HandleMisuse, match=r"'\+' on the output of step 'add'"):
        arithmetic()

    @loopml.pipeline
    def unpacking() -> Any:
        a, _b = add(1, 2)
        return a

    with pytest.raises(HandleMisuse, match="outputs="):
        unpacking()
    assert Client(tracker).search_runs().runs == []  # nothing was recorded


def test_wrong_params_are_refused_before_anything_runs(tracker: Tracker) -> None:
    @loopml.pipeline
    def flow(x: int = 1) -> Any:
        return add(x, 2)

    with pytest.raises(InvalidInput, match=r"param 'x'.*valid integer"):
        flow.run({"x": "three"})
    with pytest.raises(InvalidInput, match="has no param 'y'"):
        flow.run({"y": 1})

    @loopml.pipeline
    def bad_call() -> Any:
        return add(1, "two")

    with pytest.raises(InvalidInput, match="step 'add': argument 'b'"):
        bad_call()

    @loopml.pipeline
    def missing_arg() -> Any:
        return add(1)

    with pytest.raises(GraphError, match=r"step 'add'.*missing a required argument: 'b'"):
        missing_arg()
    assert Client(tracker).search_runs().runs == []


def test_cycles_and_unknown_nodes_are_graph_errors() -> None:
    with pytest.raises(GraphError, match="cycle: a -> b -> a"):
        topological_order({"a": ("b",), "b": ("a",)})
    with pytest.raises(GraphError, match="'c'"):
        topological_order({"a": ("c",)})
    assert topological_order({"c": ("a", "b"), "a": (), "b": ("a",)}) == ["a", "b", "c"]


FAILING = """
    import pathlib
    import loopml

    FLAG = pathlib.Path(r"FLAGPATH")
    hook_calls = []

    @loopml.step
    def prepare() -> int:
        return 1

    @loopml.step(on_failure=hook_calls.append)
    def fragile(x: int) -> int:
        if FLAG.exists():
            raise RuntimeError("the flag is up")
        return x + 1

    @loopml.step(cache=False)
    def after(x: int) -> int:
        return x * 10

    @loopml.step(cache=False)
    def independent() -> str:
        return "ok"

    @loopml.pipeline(executor="inline")
    def flow():
        return [after(fragile(prepare())), independent()]
"""


def test_a_failing_step_fails_the_run_and_skips_downstream_then_resume_reruns_only_those(
    modules: ModuleFiles, tracker: Tracker, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    module = modules.write("failing", FAILING.replace("FLAGPATH", str(flag)))
    with pytest.raises(loopml.PipelineFailed, match="failed in step 'fragile'") as caught:
        module.flow.run()
    failed_run = caught.value.run_id
    record = loopml.pipelines.store.pipeline_store(tracker).get_run(failed_run)
    assert {s.node: s.status for s in record.steps} == {
        "prepare": StepStatus.FINISHED,
        "fragile": StepStatus.FAILED,
        "after": StepStatus.SKIPPED,
        "independent": StepStatus.FINISHED,
    }
    assert "RuntimeError: the flag is up" in (record.step("fragile").error or "")
    assert 'raise RuntimeError("the flag is up")' in (record.step("fragile").error or "")
    assert record.status == "FAILED"
    assert len(module.hook_calls) == 1
    assert module.hook_calls[0].node == "fragile"

    flag.unlink()
    resumed = module.flow.run(resume_from=record)
    assert resumed.value == [20, "ok"]
    steps = {s.node: s.status for s in resumed.record.steps}
    # `independent` opted out of caching yet is reused: resume keeps what finished
    assert steps == {
        "prepare": StepStatus.CACHED,
        "fragile": StepStatus.FINISHED,
        "after": StepStatus.FINISHED,
        "independent": StepStatus.CACHED,
    }
    assert resumed.record.source_run_id == failed_run


def test_retries_with_backoff_then_success(modules: ModuleFiles, tracker: Tracker, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    module = modules.write(
        "flaky",
        f"""
        import pathlib
        import loopml

        COUNTER = pathlib.Path(r"{counter}")

        @loopml.step(retries=2, retry_delay_s=0.01, backoff=2.0, cache=False)
        def flaky() -> int:
            n = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
            COUNTER.write_text(str(n))
            if n < 3:
                raise ConnectionError(f"attempt {{n}} failed")
            return n

        @loopml.pipeline(executor="threads")
        def flow():
            return flaky()
        """,
    )
    result = module.flow.run()
    assert result.value == 3
    assert result.record.step("flaky").attempts == 3


@loopml.step(timeout_s=0.3, cache=False)
def slow() -> int:
    threading.Event().wait(5)
    return 1


def test_a_step_past_its_timeout_fails(tracker: Tracker) -> None:
    @loopml.pipeline(executor="threads")
    def flow() -> Any:
        return slow()

    with pytest.raises(loopml.PipelineFailed, match=r"timeout_s=0\.3"):
        flow.run()


@loopml.step
def left(barrier: Any) -> str:
    barrier.wait(timeout=10)
    return "left"


@loopml.step
def right(barrier: Any) -> str:
    barrier.wait(timeout=10)
    return "right"


@pytest.mark.single_executor  # the steps meet at a threading.Barrier, which only threads share
def test_independent_steps_run_in_parallel(tracker: Tracker) -> None:
    barrier = threading.Barrier(2)  # both must be running at once, or each waits 10 s and breaks it

    @loopml.pipeline(executor="threads:2")
    def flow() -> Any:
        return [left(barrier), right(barrier)]

    assert flow() == ["left", "right"]


@loopml.step
def make_array() -> Any:
    return np.arange(4)


@loopml.step
def mutate(values: Any) -> Any:
    values[0] = 100
    return values


@pytest.mark.single_executor  # in-process inputs are read-only views; a cluster worker gets its own copy (test_pipeline_ray.py)
def test_inputs_are_read_only(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow() -> Any:
        return mutate(make_array())

    with pytest.raises(loopml.PipelineFailed, match="read-only"):
        flow.run()


class Opaque:
    pass


@loopml.step
def opaque() -> Any:
    return Opaque()


def test_an_unserializable_output_fails_its_step_naming_the_type(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow() -> Any:
        return opaque()

    with pytest.raises(loopml.PipelineFailed, match=r"step 'opaque'.*Opaque"):
        flow.run()


@loopml.step
def measured() -> int:
    loopml.log_metric("quality", 0.75)
    return 1


def test_logging_inside_a_step_goes_to_its_run(tracker: Tracker) -> None:
    @loopml.pipeline(executor="threads")
    def flow() -> Any:
        return measured()

    result = flow.run()
    child = Client(tracker).get_run(result.record.step("measured").run_id or "")
    assert child.metrics == {"quality": 0.75}


@loopml.step(timeout_s=0.5, cache=False)
def stuck() -> int:
    import time

    time.sleep(60)
    return 1


@loopml.step
def quick(x: int) -> int:
    print(f"quick {x}")
    return x * 2


def test_processes_run_steps_kill_timeouts_and_keep_logs(tracker: Tracker) -> None:
    import time

    @loopml.pipeline(executor="processes:2")
    def flow() -> Any:
        return [quick(1), quick(2)]

    result = flow.run()
    assert result.value == [2, 4]
    log = Client(tracker).list_artifacts(result.record.step("quick#2").run_id or "")
    assert "logs/step.log" in {a.path for a in log}

    @loopml.pipeline(executor="processes:1")
    def hanging() -> Any:
        return [stuck(), quick(3)]

    started = time.monotonic()
    with pytest.raises(loopml.PipelineFailed, match=r"timeout_s=0\.5"):
        hanging.run()
    assert time.monotonic() - started < 20  # the worker was killed, not waited for


# -- found in review: each of these once went wrong ------------------------------------------------------


@loopml.step
def echo(items: list) -> list:
    return items


def test_arguments_are_snapshotted_when_the_step_is_called(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow() -> Any:
        columns = ["a"]
        first = echo(columns)
        columns.append("b")
        return [first, echo(columns)]

    assert flow() == [["a"], ["a", "b"]]


@dataclasses.dataclass
class Box:
    content: Any


def test_handles_hidden_in_objects_keys_or_strings_are_refused(tracker: Tracker) -> None:
    @loopml.pipeline
    def in_object() -> Any:
        return echo(Box(add(1, 2)))

    with pytest.raises(GraphError, match="inside an attribute of a Box"):
        in_object()

    @loopml.pipeline
    def as_key() -> Any:
        return echo({add(1, 2): 1})

    with pytest.raises(GraphError, match="a dict key"):
        as_key()

    @loopml.pipeline
    def formatted() -> Any:
        return echo([f"file-{add(1, 2)}.csv"])

    with pytest.raises(HandleMisuse, match="cannot format"):
        formatted()


def test_an_error_in_the_pipeline_body_is_a_clear_input_error(tracker: Tracker) -> None:
    @loopml.pipeline
    def broken() -> Any:
        return {}["missing"]

    with pytest.raises(InvalidInput, match=r"raised while describing its steps.*KeyError"):
        broken()


@loopml.step(timeout_s=0.6, cache=False)
def nap(seconds: float) -> float:
    threading.Event().wait(seconds)
    return seconds


def test_a_timeout_counts_from_the_start_not_from_the_queue(tracker: Tracker) -> None:
    @loopml.pipeline(executor="threads:1")
    def flow() -> Any:
        return [nap(0.3), nap(0.3), nap(0.3)]  # 0.9 s in total on one worker, each well within 0.6 s

    assert flow() == [0.3, 0.3, 0.3]


def test_a_timed_out_thread_does_not_hold_the_pipeline(tracker: Tracker) -> None:
    @loopml.pipeline(executor="threads")
    def flow() -> Any:
        return slow()

    started = time.monotonic()
    with pytest.raises(loopml.PipelineFailed):
        flow.run()
    assert time.monotonic() - started < 3.0  # `slow` sleeps 5 s


def test_inline_calls_past_their_timeout_fail_afterwards(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow() -> Any:
        return nap(0.8)

    with pytest.raises(loopml.PipelineFailed, match=r"timeout_s=0\.6"):
        flow.run()


@loopml.step(retries=1, retry_delay_s=1.0, cache=False)
def always_fails() -> int:
    raise ConnectionError("down")


def test_waiting_for_a_retry_does_not_spin(tracker: Tracker) -> None:
    @loopml.pipeline(executor="threads")
    def flow() -> Any:
        return always_fails()

    cpu = time.process_time()
    with pytest.raises(loopml.PipelineFailed, match="ConnectionError: down"):
        flow.run()
    assert time.process_time() - cpu < 0.6  # the 1 s backoff was slept, not busy-waited


@loopml.step
def interrupted() -> int:
    raise KeyboardInterrupt


@pytest.mark.single_executor  # a KeyboardInterrupt raised by an inline step is the driver's own
def test_an_interrupt_stops_the_run_and_records_the_step(tracker: Tracker) -> None:
    @loopml.pipeline(executor="inline")
    def flow() -> Any:
        return interrupted()

    with pytest.raises(KeyboardInterrupt):
        flow.run()
    run = Client(tracker).search_runs(filter="tags.`loopml.pipeline` LIKE '%flow%'").runs
    record = loopml.pipelines.store.pipeline_store(tracker).get_run(run[0].run_id)
    assert record.status == "KILLED"
    assert record.step("interrupted").error == "interrupted: KeyboardInterrupt"


def test_log_capture_leaves_the_root_logger_as_it_was(tracker: Tracker) -> None:
    from loopml.pipelines import capture

    def others() -> list[logging.Handler]:
        return [h for h in logging.getLogger().handlers if not isinstance(h, capture._RoutingHandler)]

    before = others()

    @loopml.pipeline(executor="threads")
    def flow() -> Any:
        return add(1, 2)

    flow()
    assert others() == before
    # The routing handler stays only while a step still captures (e.g. a thread abandoned by a timeout
    # in an earlier test); with none left, the root logger has none of LoopML's.
    with capture._install_lock:  # read both at one moment: such a thread may end meanwhile
        routing = [h for h in logging.getLogger().handlers if isinstance(h, capture._RoutingHandler)]
        live = capture._captures
    assert bool(routing) == (live > 0)


RESUMABLE = """
    import pathlib
    import loopml

    FLAG = pathlib.Path(r"FLAGPATH")

    @loopml.step
    def source(name: str) -> str:
        return name.upper()

    @loopml.step
    def gate(text: str) -> str:
        if FLAG.exists():
            raise RuntimeError("not yet")
        return text

    @loopml.pipeline(executor="inline")
    def flow():
        return gate(source("NAME"))
"""


def test_resume_runs_again_a_finished_step_whose_call_changed(
    modules: ModuleFiles, tracker: Tracker, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    module = modules.write("resumable", RESUMABLE.replace("FLAGPATH", str(flag)))
    with pytest.raises(loopml.PipelineFailed) as caught:
        module.flow.run()
    record = loopml.pipelines.store.pipeline_store(tracker).get_run(caught.value.run_id)
    flag.unlink()
    edited = modules.write("resumable", RESUMABLE.replace("FLAGPATH", str(flag)).replace('"NAME"', '"other"'))
    resumed = edited.flow.run(resume_from=record)
    assert resumed.value == "OTHER"
    assert resumed.record.step("source").status is StepStatus.FINISHED
