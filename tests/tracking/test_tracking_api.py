"""The tracking contract, run on SQLite and PostgreSQL: what a user logs is what they read back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import loopml
from loopml.tracking.tracker import Tracker

CLIENT_SUITE = True  # every test runs embedded and through a team server


def test_run_context_records_params_metrics_tags_and_finishes(tracker: Tracker) -> None:
    with loopml.start_run(experiment="exp", name="first", tags={"team": "risk"}) as run:
        loopml.log_params({"model": {"kind": "rf", "depth": 3}, "lr": 0.1, "layers": [1, 2]})
        for step in range(5):
            loopml.log_metric("loss", 1.0 / (step + 1), step=step)
        loopml.set_tag("stage", "dev")
    got = loopml.Client().get_run(run.run_id)
    assert got.status is loopml.RunStatus.FINISHED
    assert got.end_time is not None
    assert got.end_time >= got.start_time
    assert got.params == {"model.kind": "rf", "model.depth": "3", "lr": "0.1", "layers": "[1, 2]"}
    assert got.tags == {"team": "risk", "stage": "dev"}
    assert got.metrics == {"loss": pytest.approx(0.2)}
    assert got.name == "first"
    assert loopml.Client().get_experiment("exp").experiment_id == got.experiment_id
    assert loopml.active_run() is None


def test_exception_marks_run_failed_with_error(tracker: Tracker) -> None:
    with pytest.raises(RuntimeError), loopml.start_run() as run:
        raise RuntimeError("boom")
    got = loopml.Client().get_run(run.run_id)
    assert got.status is loopml.RunStatus.FAILED
    assert got.error == "RuntimeError: boom"


def test_metric_history_is_append_only_and_keeps_nan_and_inf(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        for step, value in enumerate([0.5, math.nan, math.inf, -math.inf, 0.25]):
            loopml.log_metric("m", value, step=step, timestamp=1000 + step)
        loopml.log_metric("m", 0.75, step=1, timestamp=2000)  # a second point at step 1 is kept, not replaced
    history = loopml.Client().get_metric_history(run.run_id, "m")
    values = [p.value for p in history]
    assert [p.step for p in history] == [0, 1, 1, 2, 3, 4]
    assert values[0] == 0.5
    assert math.isnan(values[1])
    assert values[2] == 0.75
    assert values[3] == math.inf
    assert values[4] == -math.inf
    assert values[5] == 0.25
    assert loopml.Client().get_run(run.run_id).metrics["m"] == 0.25


def test_latest_metric_follows_highest_step_not_logging_order(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        loopml.log_metric("auc", 0.9, step=10)
        loopml.flush()
        loopml.log_metric("auc", 0.1, step=2)
    assert loopml.Client().get_run(run.run_id).metrics["auc"] == 0.9


@pytest.mark.parametrize("bad", ["0.5", None, object(), [1.0]])
def test_non_numeric_metric_is_refused_and_nothing_is_stored(tracker: Tracker, bad: object) -> None:
    with loopml.start_run() as run, pytest.raises(loopml.InvalidInput, match="must be a number"):
        loopml.log_metric("m", bad)  # type: ignore[arg-type]
    assert loopml.Client().get_metric_history(run.run_id, "m") == []


def test_param_conflict_names_both_values_and_keeps_the_first(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        loopml.log_param("depth", 3)
        loopml.log_param("depth", 3)  # same value again: fine
        with pytest.raises(loopml.ParamConflict, match=r"already 3.*to 4"):
            loopml.log_param("depth", 4)
    assert loopml.Client().get_run(run.run_id).params == {"depth": "3"}


def test_oversized_and_malformed_values_are_refused(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        with pytest.raises(loopml.InvalidInput, match="limit"):
            loopml.log_param("big", "x" * 7000)
        with pytest.raises(loopml.InvalidInput, match="may only contain"):
            loopml.log_metric("bad;name", 1.0)
        with pytest.raises(loopml.InvalidInput, match="not JSON-able"):
            loopml.log_param("obj", object())
        with pytest.raises(loopml.InvalidInput, match="integer"):
            loopml.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]
    assert loopml.Client().get_run(run.run_id).params == {}


def test_unknown_ids_raise_not_found(tracker: Tracker) -> None:
    client = loopml.Client()
    with pytest.raises(loopml.NotFound):
        client.get_run("0" * 32)
    with pytest.raises(loopml.NotFound):
        client.get_experiment("nope")
    with pytest.raises(loopml.NotFound):
        client.log_metric("0" * 32, "m", 1.0)
    with pytest.raises(loopml.NotFound):
        client.delete_run("0" * 32)


def test_nested_runs_and_refusal_of_a_second_top_level_run(tracker: Tracker) -> None:
    with loopml.start_run(name="parent") as parent:
        with pytest.raises(loopml.InvalidInput, match="already active"):
            loopml.start_run()
        with loopml.start_run(name="child", nested=True) as child:
            assert loopml.active_run() is child
        assert loopml.active_run() is parent
    assert loopml.Client().get_run(child.run_id).parent_run_id == parent.run_id


def test_artifacts_files_and_folders_round_trip(tracker: Tracker, tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    single = tmp_path / "model.json"
    single.write_text('{"w": 1}')
    with loopml.start_run() as run:
        loopml.log_artifact(single, "models")
        loopml.log_artifact(folder)
        run.log_text("hello", "notes/readme.md")
    client = loopml.Client()
    paths = [a.path for a in client.list_artifacts(run.run_id)]
    assert paths == ["models/model.json", "notes/readme.md", "plots/a.txt", "plots/sub/b.bin"]
    out = client.download_artifacts(run.run_id, "plots", tmp_path / "out")
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert [a.path for a in client.list_artifacts(run.run_id, "plots/sub")] == ["plots/sub/b.bin"]


def test_artifact_paths_cannot_escape(tracker: Tracker, tmp_path: Path) -> None:
    file = tmp_path / "f.txt"
    file.write_text("x")
    with loopml.start_run() as run:
        for bad in ("../x", "/etc", "a/../../b"):
            with pytest.raises(loopml.InvalidInput):
                loopml.log_artifact(file, bad)
        with pytest.raises(loopml.InvalidInput):
            run.log_text("x", "../../evil.txt")
    assert loopml.Client().list_artifacts(run.run_id) == []


def test_run_captures_environment_and_entry_point(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        pass
    got = loopml.Client().get_run(run.run_id)
    assert got.entry_point
    assert got.environment_hash is not None
    env = tracker.store.attachments.get_environment(got.environment_hash)
    assert "sqlalchemy" in env["packages"]


def test_inputs_are_recorded(tracker: Tracker) -> None:
    with loopml.start_run(inputs=[loopml.RunInput("transactions", "v3", context="training")]) as run:
        run.log_input("labels", "v1")
    inputs = loopml.Client().list_inputs(run.run_id)
    assert {(i.dataset, i.version) for i in inputs} == {("transactions", "v3"), ("labels", "v1")}


def test_search_filter_order_and_pagination(tracker: Tracker) -> None:
    ids = []
    for i in range(7):
        with loopml.start_run(experiment="search") as run:
            loopml.log_param("model", "rf" if i % 2 else "lr")
            loopml.log_metric("auc", i / 10)
            loopml.set_tag("team", "risk")
        ids.append(run.run_id)
    client = loopml.Client()
    page = client.search_runs(
        ["search"], 'metrics.auc >= 0.3 and params.model = "rf"', order_by="metrics.auc DESC"
    )
    assert [r.run_id for r in page.runs] == [ids[5], ids[3]]
    first = client.search_runs(["search"], order_by=["metrics.auc"], max_results=3)
    second = client.search_runs(
        ["search"], order_by=["metrics.auc"], max_results=3, page_token=first.next_page_token
    )
    third = client.search_runs(
        ["search"], order_by=["metrics.auc"], max_results=3, page_token=second.next_page_token
    )
    assert [r.run_id for r in first.runs + second.runs + third.runs] == ids
    assert third.next_page_token is None
    with pytest.raises(loopml.InvalidFilter) as error:
        client.search_runs(filter="metrics.auc >> 1")
    assert "^" in str(error.value)
    with pytest.raises(loopml.InvalidInput, match="page token"):
        client.search_runs(page_token="garbage!")


def test_delete_restore_and_gc(tracker: Tracker, tmp_path: Path) -> None:
    with loopml.start_run() as keep:
        keep.log_text("shared", "a.txt")
    with loopml.start_run() as gone:
        gone.log_text("shared", "a.txt")
        gone.log_text("only mine", "b.txt")
        loopml.log_metric("m", 1.0)
    client = loopml.Client()
    client.delete_run(gone.run_id)
    assert [r.run_id for r in client.search_runs().runs] == [keep.run_id]
    client.restore_run(gone.run_id)
    assert len(client.search_runs().runs) == 2
    client.delete_run(gone.run_id)
    preview = client.gc(blob_grace_s=0, dry_run=True)
    assert preview.purged_runs == [gone.run_id]
    assert preview.removed_blobs == 1  # "only mine" goes with the run; "shared" stays
    assert client.get_run(gone.run_id).run_id == gone.run_id  # a dry run changes nothing
    report = client.gc(blob_grace_s=0)
    assert report.purged_runs == [gone.run_id]
    assert report.removed_blobs == 1
    with pytest.raises(loopml.NotFound):
        client.get_run(gone.run_id)
    out = client.download_artifacts(keep.run_id, "a.txt", tmp_path / "dl")
    assert out.read_text() == "shared"


def test_durable_run_commits_each_call(tracker: Tracker) -> None:
    with loopml.start_run(durable=True) as run:
        loopml.log_metric("m", 1.0)
        assert tracker.buffer.pending() == 0
        assert [p.value for p in tracker.store.metrics.history(run.run_id, "m")] == [1.0]


def test_client_log_batch_notes_and_tags_by_id(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        run.set_note("baseline with default features")
    client = loopml.Client()
    metrics = [loopml.Metric("loss", 1.0 / (s + 1), s, 1000 + s) for s in range(50)]
    client.log_batch(run.run_id, metrics=[*metrics, loopml.Metric("acc", math.nan, 0, 1)], params={"k": 5})
    client.set_tag(run.run_id, "stage", "dev")
    tracker.store.delete_tag(run.run_id, "stage")
    got = client.get_run(run.run_id)
    assert got.note == "baseline with default features"
    assert got.params == {"k": "5"}
    assert got.tags == {}
    assert got.metrics["loss"] == 1.0 / 50
    assert math.isnan(got.metrics["acc"])
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [m.value for m in metrics]
    assert client.search_runs(filter="metrics.acc > 0").runs == []  # NaN never matches
    with pytest.raises(loopml.NotFound):
        tracker.store.delete_tag(run.run_id, "stage")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: loopml.log_metric("m", 1.0, step=2**63), "64-bit"),
        (lambda: loopml.log_metric("m", 1.0, timestamp="yesterday"), "64-bit"),  # type: ignore[arg-type]
        (lambda: loopml.log_metric("m", 10**400), "too large"),
        (lambda: loopml.set_tag("t", "a\x00b"), "NUL"),
        (lambda: loopml.log_param("p", "a\x00b"), "NUL"),
        (lambda: loopml.log_params({"a.b": 1, "a": {"b": 2}}), "given twice"),
        (lambda: loopml.active_run().log_input("ds", "v" * 65), "limit"),  # type: ignore[union-attr]
        (lambda: loopml.active_run().log_text("x", "a/" * 600 + "f"), "limit"),  # type: ignore[union-attr]
    ],
)
def test_bad_values_fail_at_the_call_and_poison_nothing(tracker: Tracker, call: object, message: str) -> None:
    with loopml.start_run() as run:
        loopml.log_metric("good", 1.0)
        with pytest.raises(loopml.InvalidInput, match=message):
            call()  # type: ignore[operator]
    got = loopml.Client().get_run(run.run_id)
    assert got.metrics == {"good": 1.0}
    assert got.status is loopml.RunStatus.FINISHED


def test_mlflow_habits_work(tracker: Tracker) -> None:
    experiment = loopml.Client().create_experiment("by-id")
    with loopml.start_run(experiment=experiment.experiment_id) as run:
        loopml.log_params({"flag": True, "nothing": None})
    got = loopml.Client().get_run(run.run_id)
    assert got.experiment_id == experiment.experiment_id
    assert got.params == {"flag": "True", "nothing": "None"}
    assert [r.run_id for r in loopml.Client().search_runs("by-id").runs] == [run.run_id]
    assert loopml.Client().search_runs(filter="params.flag = 'True'").runs[0].run_id == run.run_id


def test_a_path_cannot_be_both_file_and_folder(tracker: Tracker) -> None:
    with loopml.start_run() as run:
        run.log_text("weights", "model")
        with pytest.raises(loopml.InvalidInput, match="file vs folder"):
            run.log_text("w", "model/w.bin")
        run.log_text("w", "other/w.bin")
        with pytest.raises(loopml.InvalidInput, match="file vs folder"):
            run.log_text("x", "other")
    assert [a.path for a in loopml.Client().list_artifacts(run.run_id)] == ["model", "other/w.bin"]


@pytest.mark.embedded_only  # a client cannot know where a server keeps its store (here: in this folder)
def test_logging_the_project_folder_skips_the_store(tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    with loopml.start_run() as run:
        loopml.log_artifacts(tmp_path, "code")
    paths = [a.path for a in loopml.Client().list_artifacts(run.run_id)]
    assert paths == ["code/train.py"]


def test_config_files_are_kept_logged_as_params_and_diffable(tracker: Tracker, tmp_path: Path) -> None:
    config = tmp_path / "params.yaml"
    config.write_text("model:\n  depth: 3\n  kind: rf\nlr: 0.1\n")
    with loopml.start_run() as first:
        loopml.log_config(config)
    config.write_text("model:\n  depth: 5\n  kind: rf\nlr: 0.1\n")
    with loopml.start_run() as second:
        loopml.log_config(config)
    client = loopml.Client()
    assert client.get_run(first.run_id).params == {"model.depth": "3", "model.kind": "rf", "lr": "0.1"}
    assert [a.path for a in client.list_artifacts(first.run_id)] == ["configs/params.yaml"]
    diff = client.config_diff(first.run_id, second.run_id)["params.yaml"]
    assert "-  depth: 3" in diff
    assert "+  depth: 5" in diff
    assert client.config_diff(first.run_id, first.run_id) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with loopml.start_run(), pytest.raises(loopml.InvalidInput, match="does not parse"):
        loopml.log_config(bad)
