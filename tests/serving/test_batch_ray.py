"""Batch scoring on the session's Ray cluster: the same predictions as local scoring, the model loaded once per
actor and only under the trust rules, S3 in and out, the job recorded, and clear errors with nothing written."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ray_scoring_models import CountingModel, fraud_model, rows, write_parts

import loopml
from loopml.core.errors import InvalidInput, NotFound, StoreError
from loopml.core.ray_executor import ClusterUnavailable
from loopml.predictions import read_predictions, segments
from loopml.registry.skops_io import UntrustedArtifact
from loopml.serving.batch import ScoringFailed, score
from loopml.tracking.tracker import Tracker
from s3_server import S3Server


@pytest.fixture
def fraud(sqlite_tracker: Tracker) -> Tracker:
    """Model `fraud` v1 (with its verified ONNX copy), alias champion."""
    frame = rows(300, seed=99).drop(columns="customer").astype({"channel": "category"})
    registered = loopml.models.register("fraud", fraud_model(frame), sample=frame, tracker=sqlite_tracker)
    assert registered.version.version == 1
    loopml.models.set_alias("fraud", "champion", 1, tracker=sqlite_tracker)
    return sqlite_tracker


def leftovers(folder: Path) -> list[str]:
    """Temporary folders a job left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer").reset_index(drop=True)


def test_ray_scores_as_local_scoring_does_and_records_the_job(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path
) -> None:
    data = pd.concat([rows(1_500, seed=1), rows(1_500, seed=2)], ignore_index=True)
    write_parts(data, tmp_path / "in", 4)
    data.to_parquet(tmp_path / "all.parquet")
    local = score("fraud@champion", tmp_path / "all.parquet", tmp_path / "local.parquet", log=False)

    result = score(
        "fraud@champion",
        str(tmp_path / "in" / "*.parquet"),
        tmp_path / "scored",
        executor="ray",
        workers=2,
        chunk_rows=250,
        id_column="customer",
    )
    assert (result.rows, result.scored, result.rejected, result.logged_rows) == (3_000, 3_000, 0, 3_000)
    assert (result.model, result.version, result.rejects) == ("fraud", 1, None)
    out = pd.read_parquet(tmp_path / "scored")
    assert out.columns.tolist() == pd.read_parquet(tmp_path / "local.parquet").columns.tolist()
    # Row for row, to the last bit: both ran the verified ONNX copy (the native model differs at 1e-8).
    pd.testing.assert_frame_equal(by_customer(out), by_customer(pd.read_parquet(tmp_path / "local.parquet")))
    assert local.rows == 3_000
    assert (tmp_path / "scored" / "_SUCCESS").is_file()
    assert len(list((tmp_path / "scored").glob("*.parquet"))) > 1  # written by several tasks
    assert leftovers(tmp_path) == []

    run = loopml.Client(fraud).get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags["loopml.job"] == "batch_score"
    params = run.params
    assert (params["model"], params["model_version"], params["model_ref"]) == ("fraud", "1", "fraud@champion")
    assert params["input"] == str(tmp_path / "in" / "*.parquet")
    assert params["output"] == str(tmp_path / "scored")
    assert (params["rows"], params["scored_rows"], params["rejected_rows"]) == ("3000", "3000", "0")
    assert (params["executor"], params["input_files"], params["ray_workers"]) == ("ray", "4", "2")

    logged = read_predictions(fraud, "fraud", source="batch")
    assert len(logged) == 3_000
    assert set(logged["prediction_id"]) == set(data["customer"])
    joined = logged.set_index("prediction_id")["out.prediction"].sort_index()
    assert joined.tolist() == by_customer(out)["prediction"].tolist()


def test_a_folder_and_a_single_file_are_inputs_too_and_no_rows_give_an_empty_part(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path
) -> None:
    write_parts(rows(400, seed=3), tmp_path / "in", 2)
    (tmp_path / "in" / "_SUCCESS").touch()  # markers and hidden files are not input
    (tmp_path / "in" / ".part-9.parquet.crc").write_bytes(b"not parquet")
    folder = score("fraud", tmp_path / "in", tmp_path / "a", executor="ray", log=False)
    assert (folder.rows, folder.logged_rows) == (400, 0)
    single = score("fraud", tmp_path / "in" / "part-1.parquet", tmp_path / "b", executor="ray", log=False)
    assert single.rows == 200

    rows(0).to_parquet(tmp_path / "empty.parquet")
    empty = score("fraud", tmp_path / "empty.parquet", tmp_path / "c", executor="ray", log=False)
    assert empty.rows == 0
    out = pd.read_parquet(tmp_path / "c")
    assert out.empty
    assert out.columns.tolist() == [*rows(0).columns, "prediction"]


def test_the_model_loads_once_per_actor_and_only_once_trusted(
    ray_cluster: Any, sqlite_tracker: Tracker, tmp_path: Path
) -> None:
    loads = tmp_path / "loads.txt"
    frame = rows(100).drop(columns="customer")
    loopml.models.register("counting", CountingModel(str(loads)), sample=frame, tracker=sqlite_tracker)
    write_parts(rows(2_000, seed=4), tmp_path / "in", 3)

    # A python-flavor model runs its own code when loaded: refused until someone trusts the version.
    with pytest.raises(UntrustedArtifact, match="python-flavor model"):
        score("counting", tmp_path / "in", tmp_path / "out", executor="ray", workers=2, log=False)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []
    assert {int(pid) for pid in loads.read_text().split()} == {os.getpid()}  # built by registering, only

    loopml.models.trust("counting", tracker=sqlite_tracker)
    loads.write_text("")
    result = score(
        "counting", tmp_path / "in", tmp_path / "out", executor="ray", workers=2, chunk_rows=100, log=False
    )
    assert result.rows == 2_000
    out = pd.read_parquet(tmp_path / "out")
    assert (out["prediction"] == (out["amount"] > 100).astype(int)).all()
    pids = [int(pid) for pid in loads.read_text().split()]
    # 20 batches of 100 rows over a pool of 2 actors: 2 loads, one in each actor's process.
    assert len(pids) == 2
    assert len(set(pids)) == 2
    assert os.getpid() not in pids


def test_a_bad_row_fails_the_job_and_nothing_is_left(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path
) -> None:
    data = rows(600, seed=5)
    data.loc[444, "age"] = None
    write_parts(data, tmp_path / "in", 3)
    with pytest.raises(
        ScoringFailed, match=r"\(customer 'c5-444'\) does not match .*column 'age' \(null\)"
    ) as error:
        score("fraud", tmp_path / "in", tmp_path / "out", executor="ray", id_column="customer", chunk_rows=50)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []
    assert segments(fraud, "fraud") == []
    failed = loopml.Client(fraud).search_runs(filter="attributes.status = 'FAILED'")
    assert len(failed.runs) == 1
    assert failed.runs[0].params["executor"] == "ray"


def with_bad_rows(seed: int) -> pd.DataFrame:
    """600 `rows`, some breaking the signature (nulls where none are allowed), one run of them 61 rows long."""
    data = rows(600, seed=seed)
    data.loc[[7, 444], "age"] = None
    data.loc[100:160, "amount"] = None  # a whole batch of bad rows at chunk_rows=50
    data.loc[[3, 599], "channel"] = None
    return data


def test_bad_rows_go_to_the_reject_file_as_local_scoring_rejects_them(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path
) -> None:
    data = with_bad_rows(seed=7)
    files = write_parts(data, tmp_path / "in", 3)
    data.to_parquet(tmp_path / "all.parquet")
    local = score(
        "fraud", tmp_path / "all.parquet", tmp_path / "local.parquet", rejects=tmp_path / "local-bad.parquet",
        log=False,
    )  # fmt: skip
    assert local.rejected > 60

    result = score(
        "fraud", tmp_path / "in", tmp_path / "scored", rejects=tmp_path / "bad" / "rejects.parquet",
        executor="ray", workers=2, chunk_rows=50, id_column="customer",
    )  # fmt: skip
    assert (result.rows, result.scored, result.rejected) == (600, local.scored, local.rejected)
    assert result.logged_rows == local.scored
    assert result.rejects == str(tmp_path / "bad" / "rejects.parquet")
    out = pd.read_parquet(tmp_path / "scored")
    pd.testing.assert_frame_equal(by_customer(out), by_customer(pd.read_parquet(tmp_path / "local.parquet")))

    bad = by_customer(pd.read_parquet(tmp_path / "bad" / "rejects.parquet"))
    expected = by_customer(pd.read_parquet(tmp_path / "local-bad.parquet"))
    assert bad.columns.tolist() == [*data.columns, "_file", "_reasons"]
    pd.testing.assert_frame_equal(bad.drop(columns="_file"), expected.drop(columns="_row"))
    # Each reject names the input file that held it.
    where = {c: str(path) for path in files for c in pd.read_parquet(path)["customer"]}
    assert bad["_file"].tolist() == [where[c] for c in bad["customer"]]
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["rejects.parquet"]
    assert leftovers(tmp_path) == []

    params = loopml.Client(fraud).get_run(result.run_id).params
    assert (params["rows"], params["scored_rows"], params["rejected_rows"]) == (
        "600",
        str(local.scored),
        str(local.rejected),
    )
    assert params["rejects"] == str(tmp_path / "bad" / "rejects.parquet")
    assert len(read_predictions(fraud, "fraud", source="batch")) == local.scored


def test_a_csv_reject_file_and_no_bad_rows_give_an_empty_one(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path
) -> None:
    data = with_bad_rows(seed=8)
    write_parts(data, tmp_path / "in", 2)
    data.to_parquet(tmp_path / "all.parquet")
    score("fraud", tmp_path / "all.parquet", tmp_path / "l.parquet", rejects=tmp_path / "l.csv", log=False)
    result = score(
        "fraud", tmp_path / "in", tmp_path / "scored", rejects=tmp_path / "bad.csv", executor="ray",
        log=False, chunk_rows=40,
    )  # fmt: skip
    bad = by_customer(pd.read_csv(tmp_path / "bad.csv"))
    expected = by_customer(pd.read_csv(tmp_path / "l.csv"))
    assert len(bad) == result.rejected == len(expected)
    pd.testing.assert_frame_equal(bad.drop(columns="_file"), expected.drop(columns="_row"))

    write_parts(rows(100, seed=9), tmp_path / "good", 2)
    clean = score(
        "fraud",
        tmp_path / "good",
        tmp_path / "o2",
        rejects=tmp_path / "none.parquet",
        executor="ray",
        log=False,
    )
    assert (clean.rows, clean.scored, clean.rejected) == (100, 100, 0)
    empty = pd.read_parquet(tmp_path / "none.parquet")
    assert empty.empty
    assert empty.columns.tolist() == [*rows(0).columns, "_file", "_reasons"]
    assert leftovers(tmp_path) == []


def test_a_failed_job_leaves_neither_output_nor_rejects(
    ray_cluster: Any, fraud: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.serving import ray_files

    write_parts(with_bad_rows(seed=10), tmp_path / "in", 2)

    def broken(self: Any, temp: str, parts: list[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ray_files.Place, "publish", broken)
    with pytest.raises(StoreError, match="disk full"):
        score("fraud", tmp_path / "in", tmp_path / "out", rejects=tmp_path / "bad.csv", executor="ray")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "bad.csv").exists()
    assert leftovers(tmp_path) == []
    assert segments(fraud, "fraud") == []


def test_s3_in_and_out(
    ray_cluster: Any,
    fraud: Tracker,
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    fs = s3fs.S3FileSystem(
        key=s3_server.key,
        secret=s3_server.secret,
        client_kwargs={"endpoint_url": s3_server.endpoint_url},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )
    data = rows(1_200, seed=6)
    for path in write_parts(data, tmp_path / "in", 3):
        fs.put(str(path), f"{bucket}/in/{path.name}")
    data.to_parquet(tmp_path / "all.parquet")
    score("fraud", tmp_path / "all.parquet", tmp_path / "local.parquet", log=False)

    result = score(
        "fraud", f"s3://{bucket}/in/*.parquet", f"s3://{bucket}/scored/", executor="ray", log=False
    )
    assert result.rows == 1_200
    assert result.output == f"s3://{bucket}/scored"
    fs.invalidate_cache()
    written = fs.ls(f"{bucket}/scored")
    assert f"{bucket}/scored/_SUCCESS" in written
    parts = [p for p in written if p.endswith(".parquet")]
    out = pd.concat([pq.read_table(fs.open(p, "rb")).to_pandas() for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(by_customer(out), by_customer(pd.read_parquet(tmp_path / "local.parquet")))
    assert sorted(fs.ls(bucket)) == [f"{bucket}/in", f"{bucket}/scored"]  # no temporary prefix left

    with pytest.raises(InvalidInput, match="already holds files"):
        score("fraud", f"s3://{bucket}/in/", f"s3://{bucket}/scored", executor="ray")
    with pytest.raises(InvalidInput, match=f"no Parquet file matches s3://{bucket}/nothing/"):
        score("fraud", f"s3://{bucket}/nothing/*.parquet", f"s3://{bucket}/o2", executor="ray")


@pytest.mark.parametrize(
    ("ref", "source", "output", "options", "exception", "message"),
    [
        ("nope", "in", "out", {}, NotFound, "no registered model 'nope'"),
        ("fraud", "missing.parquet", "out", {}, InvalidInput, "does not exist"),
        ("fraud", "in/*.pq", "out", {}, InvalidInput, "no Parquet file matches"),
        ("fraud", "in.csv", "out", {}, InvalidInput, "CSV input is not supported with --executor ray"),
        ("fraud", "*.csv", "out", {}, InvalidInput, "CSV input is not supported with --executor ray"),
        ("fraud", "narrow.parquet", "out", {}, InvalidInput, "lacks the model's input column(s) ['channel']"),
        ("fraud", "corrupt.parquet", "out", {}, InvalidInput, "is not a readable PARQUET file"),
        ("fraud", "in", "out.csv", {}, InvalidInput, "the output is a folder of Parquet files"),
        ("fraud", "in", "in/scored", {}, InvalidInput, "overlaps the input"),
        ("fraud", "in", "full", {}, InvalidInput, "already holds files"),
        ("fraud", "in", "out", {"rejects": "bad.txt"}, InvalidInput, "unsupported reject file type"),
        ("fraud", "in", "out", {"rejects": "out/bad.csv"}, InvalidInput, "is inside the output"),
        ("fraud", "in", "out", {"rejects": "in/part-0.parquet"}, InvalidInput, "overlaps the input"),
        ("fraud", "in", "out", {"rejects": "full.csv"}, InvalidInput, "is a folder"),
        ("fraud", "in", "out", {"executor": "threads"}, InvalidInput, "unknown executor 'threads'"),
        ("fraud", "in", "out", {"executor": "ray:4"}, InvalidInput, "unknown executor 'ray:4'"),
        (
            "fraud",
            "in",
            "out",
            {"executor": None, "workers": 2},
            InvalidInput,
            "workers is for executor='ray'",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    ray_cluster: Any,
    fraud: Tracker,
    tmp_path: Path,
    ref: str,
    source: str,
    output: str,
    options: dict[str, Any],
    exception: type[Exception],
    message: str,
) -> None:
    write_parts(rows(20), tmp_path / "in", 2)
    rows(5).to_csv(tmp_path / "in.csv", index=False)
    rows(5).drop(columns="channel").to_parquet(tmp_path / "narrow.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"")
    (tmp_path / "full.csv").mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*") if ".loopml" not in p.parts)
    if "rejects" in options:
        options = {**options, "rejects": str(tmp_path / options["rejects"])}
    with pytest.raises(exception) as error:
        score(ref, str(tmp_path / source), str(tmp_path / output), **{"executor": "ray", **options})
    assert message in str(error.value)
    assert sorted(str(p) for p in tmp_path.rglob("*") if ".loopml" not in p.parts) == before
    assert loopml.Client(fraud).search_runs().runs == []  # refused before the job was recorded


def test_an_unreachable_cluster_is_reported_in_one_line(fraud: Tracker, tmp_path: Path) -> None:
    write_parts(rows(10), tmp_path / "in", 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterUnavailable, match=f"cannot reach the Ray cluster at ray://127.0.0.1:{port}"):
        score("fraud", tmp_path / "in", tmp_path / "out", executor=f"ray://127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()
    assert np.all([not p.name.endswith(".tmp") for p in tmp_path.iterdir()])


def test_the_local_executor_points_s3_to_ray(fraud: Tracker, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="s3:// input and output need executor='ray'"):
        score("fraud", "s3://bucket/in.parquet", tmp_path / "out.parquet")
