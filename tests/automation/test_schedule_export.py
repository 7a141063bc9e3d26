"""`loopml agent export`: a crontab, Kubernetes CronJobs and an Airflow DAG file that tick each model."""

from __future__ import annotations

import ast
import itertools
import re
import shlex
import subprocess
import sys
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml.automation.export import AIRFLOW_FILE, CRON_FILE, KUBERNETES_FILE, TARGETS, export_schedule
from loopml.core.errors import InvalidInput
from loopml.core.names import check_key

# The oldest Kubernetes still commonly run, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
# A project folder a shell would misread unquoted, and cron would misread without escaping its %.
AWKWARD = "my project 100% 'real' $HOME"

# A stand-in for the loopml executable: it records its folder, arguments and one variable, says something
# on stdout (for the log) and, when asked, holds on until a release file appears.
FAKE_LOOPML = """#!/bin/sh
printf '%s|%s|%s\\n' "$PWD" "$*" "${LOOPML_EXPERIMENT:-}" >> "$RECORD"
echo "ticked $*"
if [ -n "${HOLD:-}" ]; then
  while [ ! -e "$HOLD" ]; do sleep 0.05; done
fi
"""


@pytest.fixture
def fake_loopml(tmp_path: Path) -> Path:
    folder = tmp_path / "bin dir"
    folder.mkdir()
    script = folder / "loopml"
    script.write_text(FAKE_LOOPML)
    script.chmod(0o755)
    return script


@pytest.fixture
def awkward_project(tmp_path: Path) -> Path:
    folder = tmp_path / AWKWARD
    folder.mkdir()
    return folder


def records(path: Path) -> list[list[str]]:
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- cron -----------------------------------------------------------------------------------------------------


def crontab_jobs(text: str) -> list[tuple[str, str]]:
    """(schedule, command) of every job line; comments and variable lines are checked and left out."""
    jobs = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            assert line == "CRON_TZ=UTC"
            continue
        fields = line.split(" ", 5)
        jobs.append((" ".join(fields[:5]), fields[5]))
    return jobs


def as_cron_runs(command: str) -> str:
    """What cron hands to /bin/sh, as cronie's do_command.c reads a job: a % ends the command (the rest is its
    standard input), and a backslash before a % makes it a plain % (the backslash is dropped)."""
    out: list[str] = []
    escaped = False
    for char in command:
        if escaped:
            if char == "%":
                out[-1] = "%"
            else:
                out.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
        if char == "%":
            break
        out.append(char)
    return "".join(out)


def run_cron_job(command: str, record: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(record.parent), "RECORD": str(record), **env}
    return subprocess.run(
        ["/bin/sh", "-c", as_cron_runs(command)],
        env=environment,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("every", "beat"), [(5, "*/5 * * * *"), (1, "* * * * *"), (30, "*/30 * * * *")])
def test_crontab_ticks_each_model_on_a_steady_utc_beat(tmp_path: Path, every: int, beat: str) -> None:
    files = export_schedule("cron", models=["fraud", "churn"], project_dir=tmp_path, every_minutes=every)
    assert list(files) == [CRON_FILE]
    text = files[CRON_FILE]
    assert "CRON_TZ=UTC" in text.splitlines()
    jobs = crontab_jobs(text)
    assert [schedule for schedule, _ in jobs] == [beat, beat]
    assert ["--model fraud" in jobs[0][1], "--model churn" in jobs[1][1]] == [True, True]
    for schedule, _ in jobs:
        walk = croniter(schedule, datetime(2026, 3, 8, 6, 58, tzinfo=UTC))
        times = [walk.get_next(float) for _ in range(130)]
        assert {b - a for a, b in itertools.pairwise(times)} == {every * 60.0}


def test_crontab_line_runs_the_tick_in_a_project_with_an_awkward_name(
    awkward_project: Path, fake_loopml: Path, tmp_path: Path
) -> None:
    files = export_schedule(
        "cron",
        models=["fraud", "Risk Team/churn"],
        project_dir=awkward_project,
        command=shlex.quote(str(fake_loopml)),
        env={"LOOPML_EXPERIMENT": "it's 50% done"},
    )
    jobs = crontab_jobs(files[CRON_FILE])
    record = tmp_path / "record.txt"
    for _, command in jobs:
        done = run_cron_job(command, record)
        assert done.returncode == 0, done.stderr
    assert records(record) == [
        [str(awkward_project), "agent tick --model fraud", "it's 50% done"],
        [str(awkward_project), "agent tick --model Risk Team/churn", "it's 50% done"],
    ]
    logs = sorted((awkward_project / ".loopml" / "logs").iterdir())
    assert len(logs) == 2
    assert "ticked agent tick --model fraud" in (awkward_project / ".loopml/logs/agent-fraud.log").read_text()


def test_flock_skips_a_tick_while_the_same_models_previous_one_runs(
    awkward_project: Path, fake_loopml: Path, tmp_path: Path
) -> None:
    jobs = crontab_jobs(
        export_schedule(
            "cron",
            models=["fraud", "churn"],
            project_dir=awkward_project,
            command=shlex.quote(str(fake_loopml)),
        )[CRON_FILE]
    )
    (_, fraud), (_, churn) = jobs
    record, release = tmp_path / "record.txt", tmp_path / "release"
    environment = {"PATH": "/usr/bin:/bin", "RECORD": str(record), "HOLD": str(release)}
    first = subprocess.Popen(["/bin/sh", "-c", as_cron_runs(fraud)], env=environment, cwd="/")
    try:
        wait_for(lambda: len(records(record)) == 1)  # the first tick holds the lock now
        second = run_cron_job(fraud, record, HOLD=str(release))
        assert second.returncode != 0  # flock -n gave up at once: the second tick never started
        assert len(records(record)) == 1
        other = subprocess.Popen(["/bin/sh", "-c", as_cron_runs(churn)], env=environment, cwd="/")
        wait_for(lambda: len(records(record)) == 2)  # another model's tick is not held back
        release.touch()
        assert first.wait(timeout=30) == 0
        assert other.wait(timeout=30) == 0
    finally:
        release.touch()
        first.wait(timeout=30)
    third = run_cron_job(fraud, record)  # the lock is free again
    assert third.returncode == 0, third.stderr
    assert [row[1] for row in records(record)] == [
        "agent tick --model fraud",
        "agent tick --model churn",
        "agent tick --model fraud",
    ]


def test_crontab_quotes_paths_and_names(tmp_path: Path) -> None:
    folder = tmp_path.resolve() / "a b;rm -rf x"
    text = export_schedule("cron", models=["Risk Team/churn"], project_dir=folder)[CRON_FILE]
    ((_, command),) = crontab_jobs(text)
    assert command.startswith(f"cd '{folder}' && ")
    assert "--model 'Risk Team/churn' " in command
    # The lock and log names keep only safe characters (a / would be a folder) and stay distinct by a hash.
    lock = re.search(r"flock -n (\S+) ", command)
    assert lock is not None
    assert re.fullmatch(r"\.loopml/agent-Risk_Team_churn_[0-9a-f]{8}\.lock", lock.group(1))


def test_a_backslash_before_a_percent_sign_is_refused_for_cron(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="backslash before a %"):
        export_schedule("cron", models=["m"], project_dir=tmp_path / "a\\%b")
    assert as_cron_runs("echo '50\\%' % stdin") == "echo '50%' "
    assert as_cron_runs("echo \\\\%x") == "echo \\\\"  # what the refused case would have become


def test_a_relative_project_folder_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ((_, command),) = crontab_jobs(export_schedule("cron", models=["m"], project_dir=Path("proj"))[CRON_FILE])
    assert command.startswith(f"cd {shlex.quote(str(tmp_path.resolve() / 'proj'))} && ")


# -- kubernetes -----------------------------------------------------------------------------------------------


def cronjobs(**options: Any) -> list[dict[str, Any]]:
    options = {
        "models": ["fraud"],
        "project_dir": Path("/app/project"),
        "image": "registry.local/loopml:1",
    } | options
    files = export_schedule("kubernetes", **options)
    assert list(files) == [KUBERNETES_FILE]
    assert "&id" not in files[KUBERNETES_FILE]  # no YAML anchors
    return [document for document in yaml.safe_load_all(files[KUBERNETES_FILE]) if document is not None]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_cronjobs_validate_against_the_schemas(version: str) -> None:
    documents = cronjobs(models=["fraud", "churn", "Risk.Team/Fraud_Detector-" + "x" * 80])
    assert len(documents) == 3
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_cronjob_never_overlaps_and_runs_the_tick() -> None:
    (job,) = cronjobs(
        every_minutes=10,
        namespace="ml-prod",
        command="/opt/venv/bin/loopml --quiet",
        env={"LOOPML_EXPERIMENT": "retrain"},
    )
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "CronJob"
    assert job["metadata"]["name"] == "loopml-agent-fraud"
    assert job["metadata"]["namespace"] == "ml-prod"
    spec = job["spec"]
    assert spec["schedule"] == "*/10 * * * *"
    assert croniter.is_valid(spec["schedule"])
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 600
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/loopml:1"
    assert container["command"] == ["/opt/venv/bin/loopml", "--quiet", "agent", "tick", "--model", "fraud"]
    assert container["workingDir"] == "/app/project"
    assert container["env"] == [
        {"name": "LOOPML_PROJECT_DIR", "value": "/app/project"},
        {"name": "LOOPML_EXPERIMENT", "value": "retrain"},
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "loopml-secrets", "optional": True}}]
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for metadata in (
        job["metadata"],
        spec["jobTemplate"]["metadata"],
        spec["jobTemplate"]["spec"]["template"]["metadata"],
    ):
        assert metadata["labels"]["app.kubernetes.io/name"] == "loopml-agent"
        assert metadata["labels"]["loopml/model"] == "fraud"
        assert metadata["annotations"]["loopml/model"] == "fraud"


def test_the_command_splits_like_a_shell_command() -> None:
    (job,) = cronjobs(command="'/opt/my venv/bin/loopml'")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["/opt/my venv/bin/loopml", "agent"]
    (job,) = cronjobs(command="python -m loopml")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "loopml", "agent", "tick", "--model", "fraud"]


def test_cronjob_names_are_sanitised_and_exact_names_kept_in_annotations() -> None:
    name = "Risk.Team/Fraud_Detector-" + "x" * 80
    documents = cronjobs(models=["fraud", name, "2024 model"])
    names = [document["metadata"]["name"] for document in documents]
    assert names[0] == "loopml-agent-fraud"
    for document in documents:
        metadata = document["metadata"]
        assert DNS_1123_LABEL.match(metadata["name"])
        assert len(metadata["name"]) <= 52  # the Jobs of a CronJob add 11 characters
        for value in metadata["labels"].values():
            assert LABEL_VALUE.match(value)
            assert len(value) <= 63
    assert documents[1]["metadata"]["annotations"]["loopml/model"] == name
    assert (
        documents[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        == name
    )


def test_names_that_collide_after_sanitising_are_refused() -> None:
    with pytest.raises(InvalidInput, match="both become the CronJob name 'loopml-agent-fraud'"):
        cronjobs(models=["fraud", "Fraud"])
    with pytest.raises(InvalidInput, match="both become the CronJob name"):
        cronjobs(models=["risk team", "risk/team"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(st.text(alphabet="abcXYZ019_-. /:", min_size=1, max_size=90), min_size=1, max_size=3))
def test_any_valid_model_names_give_valid_cronjobs(names: list[str]) -> None:
    try:
        for name in names:
            check_key("model", name)
        documents = cronjobs(models=names)
    except InvalidInput:  # not a model name, or two names that collide: refused, not written
        return
    assert len(documents) == len(names)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)
        assert DNS_1123_LABEL.match(document["metadata"]["name"])
        assert len(document["metadata"]["name"]) <= 52


def test_kubernetes_needs_an_image_and_an_absolute_folder_in_it() -> None:
    with pytest.raises(InvalidInput, match="needs the image"):
        cronjobs(image=None)
    with pytest.raises(InvalidInput, match="image must be"):
        cronjobs(image="registry.local/loopml 1")
    with pytest.raises(InvalidInput, match="absolute path of the project inside the image"):
        cronjobs(project_dir=Path("project"))
    with pytest.raises(InvalidInput, match="namespace"):
        cronjobs(namespace="ML_Prod")
    with pytest.raises(InvalidInput, match="LOOPML_PROJECT_DIR is set from project_dir"):
        cronjobs(env={"LOOPML_PROJECT_DIR": "/elsewhere"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("GITHUB_TOKEN", "ghp_x"),
        ("DB_PASSWORD", "hunter2"),
        ("AWS_SECRET_ACCESS_KEY", "abc"),
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("OPENAI_API_KEY", "sk-x"),
        ("client_secret", "x"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
        ("LOOPML_DATABASE_URL", "postgresql://loopml:hunter2@db:5432/loopml"),
    ],
)
def test_env_that_looks_like_a_secret_is_refused(key: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=r"looks like a secret.*Kubernetes Secret 'loopml-secrets'"):
        cronjobs(env={key: value})
    for target in ("cron", "airflow"):
        with pytest.raises(InvalidInput, match="looks like a secret"):
            export_schedule(target, models=["fraud"], project_dir=Path("/p"), env={key: value})


def test_a_store_url_without_a_password_is_fine() -> None:
    (job,) = cronjobs(
        env={"LOOPML_DATABASE_URL": "postgresql://db:5432/loopml", "LOOPML_ARTIFACT_URL": "s3://b/x"}
    )
    names = [
        item["name"]
        for item in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    ]
    assert names == ["LOOPML_PROJECT_DIR", "LOOPML_ARTIFACT_URL", "LOOPML_DATABASE_URL"]


# -- airflow --------------------------------------------------------------------------------------------------


class FakeDAG:
    """Just enough of Airflow's DAG to load the generated file: records its arguments and its tasks."""

    created: ClassVar[list[FakeDAG]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tasks: list[dict[str, Any]] = []
        FakeDAG.created.append(self)

    def __enter__(self) -> FakeDAG:
        FakeDAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        del FakeDAG.current

    current: FakeDAG


def fake_bash_operator(**kwargs: Any) -> None:
    FakeDAG.current.tasks.append(kwargs)


@pytest.fixture(params=["airflow3", "airflow2"])
def fake_airflow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[FakeDAG]:
    """Airflow 3's module layout (airflow.sdk, the standard provider) or Airflow 2's, faked in sys.modules."""
    FakeDAG.created = []
    modules = {"airflow": types.ModuleType("airflow")}
    if request.param == "airflow3":
        modules["airflow.sdk"] = types.ModuleType("airflow.sdk")
        modules["airflow.sdk"].DAG = FakeDAG
        bash = "airflow.providers.standard.operators.bash"
        for name in (
            "airflow.providers",
            "airflow.providers.standard",
            "airflow.providers.standard.operators",
            bash,
        ):
            modules[name] = types.ModuleType(name)
    else:
        modules["airflow"].DAG = FakeDAG
        bash = "airflow.operators.bash"
        modules["airflow.operators"] = types.ModuleType("airflow.operators")
        modules[bash] = types.ModuleType(bash)
        # Nothing of Airflow 3 may be found: the file must fall back.
        for name in ("airflow.sdk", "airflow.providers.standard.operators.bash"):
            monkeypatch.setitem(sys.modules, name, None)
    modules[bash].BashOperator = fake_bash_operator
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return FakeDAG.created


def load_dag_file(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "loopml_agent_dags"}
    exec(compile(source, AIRFLOW_FILE, "exec"), namespace)
    return namespace


def test_dag_file_is_valid_python_with_the_right_dag_arguments(tmp_path: Path) -> None:
    source = export_schedule("airflow", models=["fraud", "churn"], project_dir=tmp_path)[AIRFLOW_FILE]
    compile(source, AIRFLOW_FILE, "exec")
    tree = ast.parse(source)
    calls = {
        node.func.id: node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    dag = {keyword.arg: keyword.value for keyword in calls["DAG"].keywords}
    assert ast.literal_eval(dag["catchup"]) is False
    assert ast.literal_eval(dag["max_active_runs"]) == 1
    operator = {keyword.arg: keyword.value for keyword in calls["BashOperator"].keywords}
    assert ast.literal_eval(operator["retries"]) == 0
    assert ast.get_docstring(tree) is not None


def test_dag_file_makes_one_dag_per_model(fake_airflow: list[FakeDAG], awkward_project: Path) -> None:
    models = ["fraud", "Risk Team/churn", "x.sh"]
    source = export_schedule("airflow", models=models, project_dir=awkward_project, every_minutes=15)[
        AIRFLOW_FILE
    ]
    namespace = load_dag_file(source)
    assert len(fake_airflow) == 3
    dag_ids = [dag.kwargs["dag_id"] for dag in fake_airflow]
    assert len(set(dag_ids)) == 3
    for model, dag in zip(models, fake_airflow, strict=True):
        assert DAG_ID.match(dag.kwargs["dag_id"])
        assert namespace[dag.kwargs["dag_id"]] is dag  # at module level, where Airflow looks for DAGs
        assert dag.kwargs["schedule"] == "*/15 * * * *"
        assert dag.kwargs["catchup"] is False
        assert dag.kwargs["max_active_runs"] == 1
        assert dag.kwargs["start_date"].tzinfo is not None
        (task,) = dag.tasks
        assert task["retries"] == 0
        # A command ending in .sh would be read by Airflow as a template file name.
        assert not task["bash_command"].endswith((".sh", ".bash"))
        assert f"--model {model}" in task["bash_command"].replace("'", "")


def test_dag_commands_run_the_tick_in_the_project(
    fake_airflow: list[FakeDAG], awkward_project: Path, fake_loopml: Path, tmp_path: Path
) -> None:
    source = export_schedule(
        "airflow",
        models=["fraud", "Risk Team/churn"],
        project_dir=awkward_project,
        command=shlex.quote(str(fake_loopml)),
        env={"LOOPML_EXPERIMENT": "night's run"},
    )[AIRFLOW_FILE]
    load_dag_file(source)
    record = tmp_path / "record.txt"
    for dag in fake_airflow:
        # BashOperator runs `bash -c COMMAND` in a temporary folder with the worker's environment.
        done = subprocess.run(
            ["bash", "-c", dag.tasks[0]["bash_command"]],
            env={"PATH": "/usr/bin:/bin", "RECORD": str(record)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert records(record) == [
        [str(awkward_project), "agent tick --model fraud", "night's run"],
        [str(awkward_project), "agent tick --model Risk Team/churn", "night's run"],
    ]


def test_text_airflow_would_render_as_a_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="template"):
        export_schedule("airflow", models=["fraud"], project_dir=tmp_path / "{{ ds }}")
    with pytest.raises(InvalidInput, match="template"):
        export_schedule(
            "airflow", models=["fraud"], project_dir=tmp_path, env={"LOOPML_EXPERIMENT": "{% x %}"}
        )


# -- checks common to all targets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"target": "systemd"}, "unknown export target 'systemd'; choose one of: cron, kubernetes, airflow"),
        ({"models": []}, "no models to schedule"),
        ({"models": "fraud"}, "models must be a list"),
        ({"models": ["fraud", "fraud"]}, "listed twice"),
        ({"models": ["fraud@champion"]}, "model name 'fraud@champion' may only contain"),
        ({"models": [""]}, "model name must have 1 to 250 characters"),
        ({"models": ["../etc"]}, "'..' path part"),
        ({"models": [3]}, "model name must be a string"),
        ({"every_minutes": 0}, "every_minutes must divide an hour evenly"),
        ({"every_minutes": 7}, "every_minutes must divide an hour evenly"),
        ({"every_minutes": 60}, "every_minutes must divide an hour evenly"),
        ({"every_minutes": -5}, "every_minutes must divide an hour evenly"),
        ({"every_minutes": True}, "every_minutes must divide an hour evenly"),
        ({"every_minutes": "5"}, "every_minutes must divide an hour evenly"),
        ({"command": ""}, "command must name the loopml executable"),
        ({"command": "'loopml"}, "does not split like a shell command"),
        ({"command": "loopml\nrm -rf /"}, "control character"),
        ({"env": {"1X": "a"}}, "is not a variable name"),
        ({"env": {"A-B": "a"}}, "is not a variable name"),
        ({"env": {"A": 1}}, "must be a string"),
        ({"env": {"A": "x\n* * * * * evil"}}, "control character"),
        ({"project_dir": Path("/srv/a\nb")}, "control character"),
    ],
)
@pytest.mark.parametrize("target", TARGETS)
def test_invalid_options_are_refused_in_one_line(target: str, options: dict[str, Any], problem: str) -> None:
    arguments = {
        "target": target,
        "models": ["fraud"],
        "project_dir": Path("/srv/p"),
        "image": "img:1",
    } | options
    with pytest.raises(InvalidInput) as caught:
        export_schedule(arguments.pop("target"), **arguments)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_models_whose_file_names_would_collide_are_refused() -> None:
    # A name that had to change gets a hash in its file names; only a model named exactly that can clash.
    text = export_schedule("cron", models=["a/b"], project_dir=Path("/p"))[CRON_FILE]
    hashed = re.search(r"agent-(\S+)\.lock", text)
    assert hashed is not None
    with pytest.raises(InvalidInput, match="both become"):
        export_schedule("cron", models=["a/b", hashed.group(1)], project_dir=Path("/p"))


def test_output_is_deterministic(tmp_path: Path) -> None:
    for target in TARGETS:
        options: dict[str, Any] = {"models": ["b", "a"], "project_dir": Path("/srv/p"), "image": "img:1"}
        assert export_schedule(target, **options) == export_schedule(target, **options)
