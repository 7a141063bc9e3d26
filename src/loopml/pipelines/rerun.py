"""Reproduce a pipeline run: its recorded commit plus stored uncommitted diff, in a temporary git worktree,
with its recorded params and dataset versions, caching off; then compare every step's outputs.

The re-run writes to the same store as the original (so its dataset versions resolve and both runs can be
compared), as an ordinary pipeline run in mode "rerun" that points back at the original.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.pipelines.records import PipelineRunRecord
from loopml.pipelines.store import pipeline_store
from loopml.tracking.client import Client
from loopml.tracking.environment import git_state
from loopml.tracking.tracker import Tracker

SOURCE_TAG = "loopml.pipeline.source"  # the pipeline's file, relative to the git root


class RerunFailed(LoopMLError):
    """The re-run could not be set up or its pipeline failed; the message carries git's or the run's error."""

    code = "rerun_failed"


@dataclass(frozen=True)
class StepComparison:
    """One step call in both runs: did it produce outputs with the same content?"""

    node: str
    same: bool
    original: tuple[str, ...]
    rerun: tuple[str, ...]


@dataclass(frozen=True)
class RerunReport:
    """The outcome of `rerun`: which steps reproduced their outputs."""

    original_run_id: str
    rerun_run_id: str
    commit: str
    applied_diff: bool
    steps: tuple[StepComparison, ...]

    @property
    def reproduced(self) -> bool:
        """Whether every step of the original produced the same outputs again."""
        return all(step.same for step in self.steps)


def rerun(run_id: str, *, tracker: Tracker, executor: str | None = None) -> RerunReport:
    """Re-run pipeline run `run_id` from its recorded code, params and data, and compare the outputs."""
    store = pipeline_store(tracker)
    original = store.get_run(run_id)
    client = Client(tracker)
    run = client.get_run(run_id)
    if run.git.commit is None:
        raise InvalidInput(
            f"run {run_id} was not started in a git repository: there is no commit to check out"
        )
    root = git_state(tracker.settings.project_dir).root
    if root is None:
        raise InvalidInput(f"{tracker.settings.project_dir} is not inside a git repository")
    diff = client.get_code_diff(run_id)
    with tempfile.TemporaryDirectory(prefix="loopml-rerun-") as temp:
        tree = Path(temp) / "tree"
        _git(root, "worktree", "add", "--detach", str(tree), run.git.commit)
        try:
            if diff:
                _git(str(tree), "apply", "--whitespace=nowarn", "-", stdin=diff)
            rerun_id = _run_in(
                tree, root, original, source=run.tags.get(SOURCE_TAG), tracker=tracker, executor=executor
            )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=root,
                check=False,
                capture_output=True,
            )
    repeated = store.get_run(rerun_id)
    return RerunReport(run_id, rerun_id, run.git.commit, bool(diff), tuple(_compare(original, repeated)))


def _run_in(
    tree: Path,
    root: str,
    original: PipelineRunRecord,
    *,
    source: str | None,
    tracker: Tracker,
    executor: str | None,
) -> str:
    settings = tracker.settings
    project = tree / os.path.relpath(settings.project_dir, root)
    module, _, qualname = original.pipeline.partition(":")
    argv = [sys.executable, "-c", "from loopml.cli.app import main; main()", "pipeline", "run"]
    import_root = _import_root(source, module)
    if import_root is None:  # a script or an unknown file: import it by path, as it was run
        argv.append(f"{tree / source}:{qualname}" if source else original.pipeline)
    else:  # a module of a package: import it by name from its root, so relative imports work
        argv.append(original.pipeline)
    argv += ["--params-json", json.dumps(original.params), "--no-cache", "--json", "--no-progress"]
    argv += ["--rerun-of", original.run_id]
    if executor:
        argv += ["--executor", executor]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_HOME"] = str(settings.home_dir)
    if settings.database_url:
        env["LOOPML_DATABASE_URL"] = settings.database_url
    if settings.artifact_url:
        env["LOOPML_ARTIFACT_URL"] = settings.artifact_url
    if import_root is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree / import_root), env.get("PYTHONPATH")]))
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RerunFailed(
            f"the re-run of {original.run_id} ({module}) failed:\n{done.stderr.strip()[-4000:]}"
        )
    return str(json.loads(done.stdout)["run_id"])


def _import_root(source: str | None, module: str) -> str | None:
    """The folder (relative to the git root) from which `module` imports as the file `source`, if any."""
    if source is None or module == "__main__" or "." not in module:
        return None
    parts = Path(source).with_suffix("").parts
    names = module.split(".")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if len(parts) < len(names) or list(parts[-len(names) :]) != names:
        return None
    return Path(*parts[: -len(names)]).as_posix() if len(parts) > len(names) else "."


def _compare(original: PipelineRunRecord, repeated: PipelineRunRecord) -> list[StepComparison]:
    again = {s.node: s for s in repeated.steps}
    comparisons = []
    for step in original.steps:
        before = tuple(o.content_hash for o in step.outputs)
        other = again.get(step.node)
        after = tuple(o.content_hash for o in other.outputs) if other is not None else ()
        comparisons.append(StepComparison(step.node, bool(before) and before == after, before, after))
    return comparisons


def _git(cwd: str, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RerunFailed(f"git {' '.join(args[:2])} failed: {done.stderr.strip()}")
