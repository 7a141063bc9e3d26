"""End-to-end: `loopml pipeline run/show/explain/list/resume` with the real executable on a real project."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from test_cli import cli

from git_repo import git

FLOW = """
import os
import loopml

@loopml.step
def numbers(n: int) -> list:
    print(f"making {n} numbers")
    return list(range(n))

@loopml.step
def scale(values: list, factor: float) -> list:
    if os.environ.get("BREAK_SCALE"):
        raise ValueError("scale is broken")
    return [v * factor for v in values]

@loopml.step
def total(values: list) -> float:
    return float(sum(values))

@loopml.pipeline
def flow(n: int = 3, factor: float = 2.0) -> dict:
    values = numbers(n)
    return {"total": total(scale(values, factor)), "count": n}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    assert cli(tmp_path, "init").returncode == 0
    return tmp_path


def steps(project: Path, run_id: str) -> dict[str, str]:
    shown = cli(project, "pipeline", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return {s["node"]: s["status"] for s in json.loads(shown.stdout)["steps"]}


def test_run_prints_the_value_then_reruns_from_cache_and_explains(project: Path) -> None:
    first = cli(project, "pipeline", "run", "flow.py:flow", "-p", "n=4")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"count": 4, "total": 12.0}
    assert "3 finished" in first.stderr

    again = cli(project, "pipeline", "run", "flow.py:flow", "-p", "n=4", "--json")
    assert again.returncode == 0, again.stderr
    run_id = json.loads(again.stdout)["run_id"]
    assert steps(project, run_id) == {"numbers": "cached", "scale": "cached", "total": "cached"}

    changed = cli(project, "pipeline", "run", "flow.py:flow", "-p", "n=4", "-p", "factor=3", "--json")
    changed_id = json.loads(changed.stdout)["run_id"]
    assert json.loads(changed.stdout)["value"] == {"count": 4, "total": 18.0}
    assert steps(project, changed_id) == {"numbers": "cached", "scale": "finished", "total": "finished"}
    explained = cli(project, "pipeline", "explain", changed_id, "scale")
    assert explained.returncode == 0, explained.stderr
    assert "param 'factor' changed: 2.0 -> 3.0" in explained.stdout

    tree = cli(project, "pipeline", "show", first_run(project, -1), "--logs", "numbers")
    assert tree.returncode == 0, tree.stderr
    assert "numbers" in tree.stdout
    assert "ran" in tree.stdout
    assert "making 4 numbers" in tree.stdout

    listed = cli(project, "pipeline", "list", "--json")
    assert json.loads(listed.stdout)[0]["run_id"] == changed_id


def first_run(project: Path, index: int) -> str:
    listed = json.loads(cli(project, "pipeline", "list", "--json").stdout)
    return str(listed[index]["run_id"])


def test_processes_executor_gives_the_same_value(project: Path) -> None:
    result = cli(project, "pipeline", "run", "flow.py:flow", "-p", "n=5", "-x", "processes:2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["value"] == {"count": 5, "total": 20.0}


def test_a_failing_step_exits_1_and_resume_finishes_the_run(project: Path) -> None:
    failed = cli(project, "pipeline", "run", "flow.py:flow", env={"BREAK_SCALE": "1"})
    assert failed.returncode == 1
    assert "failed in step 'scale'" in failed.stderr
    assert "ValueError: scale is broken" in failed.stderr
    run_id = first_run(project, 0)
    assert steps(project, run_id) == {"numbers": "finished", "scale": "failed", "total": "skipped"}

    resumed = cli(project, "pipeline", "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["value"] == {"count": 3, "total": 6.0}
    resumed_id = json.loads(resumed.stdout)["run_id"]
    assert steps(project, resumed_id) == {"numbers": "cached", "scale": "finished", "total": "finished"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flow.py:flow", "-p", "n=three"], "param 'n'"),
        (["flow.py:flow", "-p", "bogus=1"], "has no param 'bogus'"),
        (["flow.py:flow", "-p", "novalue"], "KEY=VALUE"),
        (["flow.py:nothing"], "is not a @loopml.pipeline"),
        (["missing.py:flow"], "no file 'missing.py'"),
        (["flow"], "module:function"),
        (["broken.py:flow"], "broken.py:2: SyntaxError"),
    ],
)
def test_bad_input_exits_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    (project / "broken.py").write_text("import loopml\ndef flow(:\n")
    result = cli(project, "pipeline", "run", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert cli(project, "pipeline", "list", "--json").stdout.strip() == "[]"  # nothing was recorded


def test_unknown_run_and_step_exit_2(project: Path) -> None:
    assert cli(project, "pipeline", "show", "nope").returncode == 2
    cli(project, "pipeline", "run", "flow.py:flow")
    run_id = first_run(project, 0)
    result = cli(project, "pipeline", "explain", run_id, "nope")
    assert result.returncode == 2
    assert "its steps are: numbers, scale, total" in result.stderr


def test_rerun_reproduces_from_the_recorded_commit_and_diff(project: Path) -> None:
    git(project, "init", "-q")
    (project / ".gitignore").write_text(".loopml/\n")
    git(project, "add", "flow.py", ".gitignore", "loopml.toml")
    git(project, "commit", "-q", "-m", "flow")
    source = (project / "flow.py").read_text()
    # Uncommitted at run time: the stored diff must bring it back.
    (project / "flow.py").write_text(
        source.replace("return float(sum(values))", "return float(sum(values)) + 0.5")
    )
    first = cli(project, "pipeline", "run", "flow.py:flow", "--json")
    assert json.loads(first.stdout)["value"]["total"] == 6.5
    run_id = json.loads(first.stdout)["run_id"]
    # The working tree moves on; the re-run must not see it.
    (project / "flow.py").write_text(source.replace("return float(sum(values))", "return 0.0"))

    result = cli(project, "pipeline", "rerun", run_id, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reproduced"] is True
    assert report["applied_diff"] is True
    assert [s["node"] for s in report["steps"]] == ["numbers", "scale", "total"]
    again = steps(project, report["rerun_run_id"])
    assert again == {"numbers": "finished", "scale": "finished", "total": "finished"}  # cache off
    assert len(git(project, "worktree", "list").strip().splitlines()) == 1  # the temporary worktree is gone


def test_rerun_outside_git_is_a_clear_error(project: Path) -> None:
    cli(project, "pipeline", "run", "flow.py:flow")
    result = cli(project, "pipeline", "rerun", first_run(project, 0))
    assert result.returncode == 2
    assert "git repository" in result.stderr


PACKAGE_FLOW = """
import loopml
from .helpers import OFFSET

@loopml.step
def shift(values: tuple, label, offset: int) -> list:
    return [f"{label}-{v + offset}" for v in values]

@loopml.pipeline
def flow(values: tuple[int, ...] = (1, 2), label="3"):
    return shift(values, label, OFFSET)
"""


def test_rerun_of_a_package_module_keeps_param_types_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("OFFSET = 10\n")
    (package / "flows.py").write_text(textwrap.dedent(PACKAGE_FLOW))
    assert cli(tmp_path, "init").returncode == 0
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text(".loopml/\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "package")
    first = cli(tmp_path, "pipeline", "run", "pkg.flows:flow", "-p", "values=[4, 5]", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["value"] == ["3-14", "3-15"]
    rerun = cli(tmp_path, "pipeline", "rerun", json.loads(first.stdout)["run_id"], "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["reproduced"] is True


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_pipeline.py"


def test_the_example_pipeline_runs_reruns_cached_and_reruns_only_what_a_param_changes(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    target = f"{EXAMPLE}:breast_cancer"
    first = cli(tmp_path, "pipeline", "run", target, "-p", "C=0.5", "--json")
    assert first.returncode == 0, first.stderr
    value = json.loads(first.stdout)["value"]
    assert value["evaluation"]["primary_metric"] == "roc_auc"
    assert value["evaluation"]["metrics"]["roc_auc"] > 0.95
    assert value["model"] == "breast_cancer@v1"
    names = ["load_builtin", "clean_data", "split_data", "build_features", "train_model", "evaluate_model"]
    register = {
        "register_model": "finished"
    }  # cache=False: it always runs; the registry recognises the model
    first_steps = steps(project=tmp_path, run_id=json.loads(first.stdout)["run_id"])
    assert first_steps == {**dict.fromkeys(names, "finished"), **register}

    again = cli(tmp_path, "pipeline", "run", target, "-p", "C=0.5", "--json")
    assert steps(tmp_path, json.loads(again.stdout)["run_id"]) == {
        **dict.fromkeys(names, "cached"),
        **register,
    }
    assert json.loads(again.stdout)["value"] == value

    changed = cli(tmp_path, "pipeline", "run", target, "-p", "C=2", "--json")
    statuses = steps(tmp_path, json.loads(changed.stdout)["run_id"])
    assert statuses == {
        **dict.fromkeys(names[:4], "cached"),
        "train_model": "finished",
        "evaluate_model": "finished",
        **register,
    }
    assert json.loads(changed.stdout)["value"]["model"] == "breast_cancer@v2"
    shown = cli(tmp_path, "models", "show", "breast_cancer@v2", "--json")
    assert json.loads(shown.stdout)["manifest"]["lineage"]["eval_dataset"] == "breast_cancer_holdout@v1"
    assert cli(tmp_path, "models", "promote", "breast_cancer", "1").returncode == 0
    gated = cli(tmp_path, "models", "promote", "breast_cancer", "2")  # scored with v1 on the held-out rows
    assert "beats v1 on roc_auc" in gated.stdout
    holdout = cli(tmp_path, "data", "list", "--json")
    assert "breast_cancer_holdout" in holdout.stdout
