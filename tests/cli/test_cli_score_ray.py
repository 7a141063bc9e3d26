"""End-to-end: `loopml score --executor ray` with the real executable, joining the session's Ray cluster
(RAY_ADDRESS), on a real project; errors exit with one line and leave nothing behind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_cli import cli
from test_cli_score import registered_project, rows


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Model `fraud` v1 (champion), and three Parquet files under in/."""
    registered_project(tmp_path)
    (tmp_path / "in").mkdir()
    for seed in (2, 3, 4):
        rows(300, seed, prefix=f"r{seed}-").to_parquet(tmp_path / "in" / f"part-{seed}.parquet")
    return tmp_path


@pytest.fixture
def joined(ray_cluster: Any) -> dict[str, str]:
    """The environment that makes `--executor ray` join the session's cluster instead of starting one."""
    return {"RAY_ADDRESS": str(ray_cluster.get_runtime_context().gcs_address)}


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".loopml" not in p.parts)


def test_score_on_ray_from_the_cli(project: Path, joined: dict[str, str]) -> None:
    done = cli(
        project, "score", "fraud@champion", "in/*.parquet", "-o", "scored", "--executor", "ray",
        "--id-column", "id", "--chunk-rows", "200", "--json", env=joined,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{"), done.stdout  # the JSON only: Ray's output goes elsewhere
    result = json.loads(done.stdout)
    assert (result["rows"], result["scored"], result["rejected"], result["logged_rows"]) == (900, 900, 0, 900)
    scored = pd.read_parquet(project / "scored").sort_values("id").reset_index(drop=True)
    assert scored.columns.tolist() == ["id", "amount", "age", "prediction", "proba_0", "proba_1"]

    pd.concat([pd.read_parquet(p) for p in sorted((project / "in").iterdir())]).to_parquet(
        project / "all.parquet"
    )
    local = cli(project, "score", "fraud", "all.parquet", "-o", "local.parquet", "--no-log")
    assert local.returncode == 0, local.stderr
    expected = pd.read_parquet(project / "local.parquet").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(scored, expected)

    shown = cli(project, "runs", "show", result["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.lstrip().startswith("{"), shown.stdout
    params = json.loads(shown.stdout)["run"]["params"]
    assert (params["executor"], params["rows"], params["model_ref"]) == ("ray", "900", "fraud@champion")

    plain = cli(project, "score", "fraud", "in", "-o", "again", "--executor", "ray", "--no-log", env=joined)
    assert plain.returncode == 0, plain.stderr
    assert "fraud@v1: scored 900 rows on Ray -> again" in plain.stdout


def test_bad_rows_go_to_the_reject_file_on_ray(project: Path, joined: dict[str, str]) -> None:
    bad = rows(100, 5, prefix="r5-")
    bad.loc[[3, 40, 41, 99], "amount"] = None
    bad.to_parquet(project / "in" / "part-5.parquet")
    done = cli(
        project, "score", "fraud", "in", "-o", "scored", "--executor", "ray", "--rejects", "out/bad.csv",
        "--id-column", "id", "--chunk-rows", "64", "--json", env=joined,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{"), done.stdout
    result = json.loads(done.stdout)
    assert (result["rows"], result["scored"], result["rejected"], result["logged_rows"]) == (
        1000,
        996,
        4,
        996,
    )
    assert result["rejects"] == "out/bad.csv"
    rejected = pd.read_csv(project / "out" / "bad.csv").sort_values("id").reset_index(drop=True)
    assert rejected.columns.tolist() == ["id", "amount", "age", "_file", "_reasons"]
    assert rejected["id"].tolist() == ["r5-3", "r5-40", "r5-41", "r5-99"]
    assert set(rejected["_file"]) == {str(project / "in" / "part-5.parquet")}

    pd.concat([pd.read_parquet(p) for p in sorted((project / "in").iterdir())]).to_parquet(
        project / "all.parquet"
    )
    local = cli(project, "score", "fraud", "all.parquet", "-o", "local.parquet", "--rejects", "local.csv",
                "--no-log")  # fmt: skip
    assert local.returncode == 0, local.stderr
    expected = pd.read_csv(project / "local.csv").sort_values("id").reset_index(drop=True)
    assert rejected["_reasons"].tolist() == expected["_reasons"].tolist()
    scored = pd.read_parquet(project / "scored").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        scored, pd.read_parquet(project / "local.parquet").sort_values("id").reset_index(drop=True)
    )

    plain = cli(project, "score", "fraud", "in", "-o", "again", "--executor", "ray", "--no-log",
                "--rejects", "again.parquet", env=joined)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "scored 996 rows on Ray -> again, 4 rejected -> again.parquet" in plain.stdout

    failed = cli(project, "score", "fraud", "in", "-o", "failed", "--executor", "ray", env=joined)
    assert failed.returncode == 1, failed.stderr
    assert "does not match the model signature" in failed.stderr
    assert not (project / "failed").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "in", "-o", "out"], "no registered model 'nope'"),
        (["fraud", "in/*.csv", "-o", "out"], "no Parquet file matches"),
        (["fraud", "in.csv", "-o", "out"], "CSV input is not supported with --executor ray"),
        (["fraud", "narrow.parquet", "-o", "out"], "lacks the model's input column(s) ['age']"),
        (["fraud", "in", "-o", "out", "--rejects", "bad.txt"], "unsupported reject file type"),
        (["fraud", "in", "-o", "in/out"], "overlaps the input"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    project: Path, joined: dict[str, str], args: list[str], message: str
) -> None:
    rows(3).to_csv(project / "in.csv", index=False)
    rows(3).drop(columns="age").to_parquet(project / "narrow.parquet")
    before = files(project)
    result = cli(project, "score", *args, "--executor", "ray", env=joined)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert files(project) == before


def test_an_unknown_executor_and_an_unreachable_cluster(project: Path) -> None:
    bad = cli(project, "score", "fraud", "in", "-o", "out", "--executor", "ray:many")
    assert bad.returncode == 2
    assert "unknown executor 'ray:many'" in bad.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = cli(project, "score", "fraud", "in", "-o", "out", "--executor", f"ray://127.0.0.1:{port}")
    assert unreachable.returncode == 3
    assert f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert not (project / "out").exists()


def test_without_ray_installed_the_error_names_the_extra(project: Path) -> None:
    program = (
        "import sys; sys.modules['ray'] = None\n"
        "from loopml.cli.app import main\n"
        "sys.argv = ['loopml', 'score', 'fraud', 'in', '-o', 'out', '--executor', 'ray']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=project, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "pip install 'loopml[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "out").exists()
