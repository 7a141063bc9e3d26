"""End-to-end: `loopml import mlflow --from ...` with the real executable, on an `mlruns` folder MLflow wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import cli

from mlflow_client import run_client
from team_server import free_port

SCRIPT = """
import mlflow

mlflow.set_experiment("cli")
with mlflow.start_run(run_name="one") as run:
    mlflow.log_param("alpha", 0.5)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_text("hello", "notes/readme.txt")
report({"run_id": run.info.run_id})
"""


@pytest.fixture(scope="module")
def mlruns(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("mlflow-cli") / "mlruns"
    reported = run_client(SCRIPT, tracking_uri=f"file:{folder}", env={"MLFLOW_ALLOW_FILE_STORE": "true"})
    return folder, reported["run_id"]


def test_import_reports_counts_and_resumes(mlruns: tuple[Path, str], tmp_path: Path) -> None:
    folder, run_id = mlruns
    first = cli(tmp_path, "import", "mlflow", "--from", str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == (
        "Imported 2 experiments, 1 run (3 metric points, 1 param, 4 tags, 1 artifact, 0.0 MiB), "
        "0 logged models, 0 model versions of 0 registered models, 0 aliases; "
        "skipped as already imported: nothing; not imported: 0"
    )
    shown = cli(tmp_path, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "alpha" in shown.stdout

    again = cli(tmp_path, "import", "mlflow", "--from", folder.as_uri(), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["runs"], report["skipped"]) == (0, {"experiment": 2, "run": 1})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tmp}/missing", "no such folder"),
        ("{tmp}", "is not an MLflow file store"),
        ("ftp://example.org/mlruns", "give an mlruns folder"),
        ("http://127.0.0.1:{port}", "cannot reach the MLflow server"),
    ],
)
def test_a_bad_source_exits_2_with_one_line(tmp_path: Path, source: str, message: str) -> None:
    result = cli(tmp_path, "import", "mlflow", "--from", source.format(tmp=tmp_path, port=free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".loopml").exists()  # the project is not touched


def test_import_without_a_source_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(tmp_path, "import", "mlflow")
    assert result.returncode == 2
    assert "--from" in result.stderr
