"""Batch scoring: streamed chunk by chunk, bad rows rejected with reasons or the job failed with nothing
written, the job recorded as a run, and the predictions in the prediction log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import loopml
from loopml.core.errors import InvalidInput, NotFound
from loopml.core.hashing import hash_file
from loopml.predictions import read_predictions, segments
from loopml.serving.batch import ScoringFailed, score
from loopml.tracking.tracker import Tracker


def rows(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(count)],
            "amount": np.round(rng.normal(100, 20, count), 2),
            "age": rng.integers(18, 80, count),
            "channel": rng.choice(["web", "shop", "phone"], count),
        }
    )


@pytest.fixture
def scoring(sqlite_tracker: Tracker) -> tuple[Tracker, Pipeline]:
    """Model `fraud` v1 (amount, age, channel as a category), champion; and the fitted pipeline itself."""
    frame = rows(200).drop(columns="customer").astype({"channel": "category"})
    label = ((frame["amount"] > 100) ^ (frame["channel"] == "phone")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["channel"]),
        ]
    )
    model = Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=1000))]).fit(frame, label)
    loopml.models.register("fraud", model, sample=frame, tracker=sqlite_tracker)
    loopml.models.set_alias("fraud", "champion", 1, tracker=sqlite_tracker)
    return sqlite_tracker, model


def test_parquet_is_scored_chunk_by_chunk_recorded_and_logged(
    scoring: tuple[Tracker, Pipeline], tmp_path: Path
) -> None:
    tracker, model = scoring
    data = rows(1_000)
    source = tmp_path / "big.parquet"
    data.to_parquet(source, row_group_size=64)  # row groups that do not line up with the chunks
    seen: list[int] = []
    result = score(
        "fraud@champion",
        source,
        tmp_path / "out.parquet",
        chunk_rows=100,
        progress=lambda n, _t: seen.append(n),
    )
    assert (result.rows, result.scored, result.rejected, result.chunks, result.max_chunk_rows) == (
        1_000, 1_000, 0, 10, 100,
    )  # fmt: skip
    assert seen == list(range(100, 1_001, 100))  # one chunk of 100 rows at a time, never the whole file
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.columns.tolist() == [
        "customer",
        "amount",
        "age",
        "channel",
        "prediction",
        "proba_0",
        "proba_1",
    ]
    pd.testing.assert_frame_equal(out[data.columns.tolist()], data)
    inputs = data.drop(columns="customer").astype({"channel": "category"})
    assert out["prediction"].tolist() == model.predict(inputs).tolist()
    assert np.allclose(out[["proba_0", "proba_1"]], model.predict_proba(inputs), atol=1e-5)

    run = loopml.Client(tracker).get_run(result.run_id)
    assert run.status == "FINISHED"
    params = run.params
    assert params["model"] == "fraud"
    assert params["model_version"] == "1"
    assert params["model_ref"] == "fraud@champion"
    assert params["input_hash"] == hash_file(source) == result.input_hash
    assert (params["rows"], params["rejected_rows"]) == ("1000", "0")

    logged = read_predictions(tracker, "fraud", source="batch")
    assert len(logged) == result.logged_rows == 1_000
    assert set(logged["route"]) == {"batch"}
    assert logged["prediction_id"].tolist()[:2] == [f"{result.run_id}:0", f"{result.run_id}:1"]
    assert logged["out.prediction"].tolist() == out["prediction"].tolist()


def test_bad_csv_rows_go_to_the_reject_file_with_reasons(
    scoring: tuple[Tracker, Pipeline], tmp_path: Path
) -> None:
    tracker, _ = scoring
    data = rows(50).astype({"amount": object, "age": object})
    data.loc[3, "amount"] = "lots"
    data.loc[17, "age"] = None
    data.loc[41, "age"] = 30.5
    data.loc[42, "channel"] = "fax"  # an unseen level is drift, not an error, unless strict
    source = tmp_path / "in.csv"
    data.to_csv(source, index=False)
    result = score(
        "fraud",
        source,
        tmp_path / "out.csv",
        chunk_rows=8,
        rejects=tmp_path / "bad.csv",
        id_column="customer",
    )
    assert (result.rows, result.scored, result.rejected, result.chunks) == (50, 47, 3, 7)
    bad = pd.read_csv(tmp_path / "bad.csv")
    assert bad["_row"].tolist() == [3, 17, 41]
    assert bad["customer"].tolist() == ["c3", "c17", "c41"]
    reasons = bad["_reasons"].tolist()
    assert "column 'amount': 'lots' is not a number" in reasons[0]
    assert "column 'age' (null)" in reasons[1]
    assert "column 'age' (type)" in reasons[2]
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 47
    assert "c3" not in set(out["customer"])
    assert set(read_predictions(tracker, "fraud")["prediction_id"]) == set(out["customer"])

    strict = score(
        "fraud", source, tmp_path / "strict.csv", rejects=tmp_path / "bad2.parquet", strict=True, log=False
    )
    assert strict.rejected == 4
    assert "unseen_level" in pd.read_parquet(tmp_path / "bad2.parquet")["_reasons"].iloc[-1]


def test_fail_mode_writes_nothing_and_undoes_the_log(
    scoring: tuple[Tracker, Pipeline], tmp_path: Path
) -> None:
    tracker, _ = scoring
    data = rows(100)
    data.loc[95, "age"] = None
    source = tmp_path / "in.parquet"
    data.to_parquet(source)
    with pytest.raises(ScoringFailed, match=r"row 95 of the input .*column 'age' \(null\)"):
        score("fraud", source, tmp_path / "out.parquet", chunk_rows=10)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".loopml") == ["in.parquet"]
    assert segments(tracker, "fraud") == []
    failed = loopml.Client(tracker).search_runs(filter="attributes.status = 'FAILED'")
    assert len(failed.runs) == 1


def test_no_log_and_an_empty_file(scoring: tuple[Tracker, Pipeline], tmp_path: Path) -> None:
    tracker, _ = scoring
    rows(0).to_csv(tmp_path / "empty.csv", index=False)
    result = score("fraud@v1", tmp_path / "empty.csv", tmp_path / "out.parquet", log=False)
    assert (result.rows, result.chunks, result.logged_rows) == (0, 0, 0)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.columns.tolist()[-1] == "prediction"
    assert out.empty
    rows(5).to_csv(tmp_path / "five.csv", index=False)
    score("fraud", tmp_path / "five.csv", tmp_path / "five.out.csv", log=False)
    assert segments(tracker, "fraud") == []


@pytest.mark.parametrize(
    ("ref", "source", "output", "exception", "message"),
    [
        ("nope", "in.csv", "out.csv", NotFound, "no registered model 'nope'"),
        ("fraud@v9", "in.csv", "out.csv", NotFound, "has no v9"),
        ("fraud", "missing.csv", "out.csv", InvalidInput, "does not exist"),
        ("fraud", "in.json", "out.csv", InvalidInput, "unsupported file type '.json'"),
        ("fraud", "in.csv", "out.xlsx", InvalidInput, "unsupported file type '.xlsx'"),
        ("fraud", "corrupt.parquet", "out.csv", InvalidInput, "is not a readable PARQUET file"),
        ("fraud", "narrow.csv", "out.csv", InvalidInput, "lacks the model's input column(s) ['channel']"),
        ("fraud", "in.csv", "in.csv", InvalidInput, "is the input file"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    scoring: tuple[Tracker, Pipeline],
    tmp_path: Path,
    ref: str,
    source: str,
    output: str,
    exception: type[Exception],
    message: str,
) -> None:
    rows(5).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "in.json").write_text("{}")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    rows(5).drop(columns="channel").to_csv(tmp_path / "narrow.csv", index=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(exception) as error:
        score(ref, tmp_path / source, tmp_path / output)
    assert message in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
