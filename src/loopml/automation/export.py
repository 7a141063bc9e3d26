"""The beat for an external scheduler: a crontab, Kubernetes CronJobs or an Airflow DAG file that run
`loopml agent tick --model NAME` for each model every few minutes (`loopml agent export --target ...`).

The tick evaluates the model's own policy (its cron schedule in its time zone, new data, drift, alerts) and
retries what failed, so the outside scheduler only gives each model a steady beat, in UTC, and makes sure two
ticks of one model never overlap:

- cron: `flock -n` on a lock file per model skips a tick while the previous one still holds the lock.
- kubernetes: one CronJob per model with `concurrencyPolicy: Forbid`.
- airflow: one DAG per model with `max_active_runs=1`, `catchup=False` and no retries.

Nothing here writes files: `export_schedule` returns `{file name: content}` and the caller writes them. Values
that look like secrets are refused, so no generated file ever holds one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from loopml._version import __version__
from loopml.core.errors import InvalidInput
from loopml.core.hashing import hash_text
from loopml.core.names import check_key
from loopml.core.settings import HOME_DIR
from loopml.serving.export_kubernetes import USER_ID, label_value, resource_name

__all__ = ["AIRFLOW_FILE", "CRON_FILE", "EVERY_MINUTES", "KUBERNETES_FILE", "TARGETS", "export_schedule"]

TARGETS = ("cron", "kubernetes", "airflow")
EVERY_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # divisors of an hour: the beat is steady across hours
CRON_FILE = "loopml-agent.crontab"
KUBERNETES_FILE = "loopml-agent-cronjobs.yaml"
AIRFLOW_FILE = "loopml_agent_dags.py"
# Every CronJob reads this Secret (if it exists), so store URLs and credentials never sit in the manifest.
SECRET_NAME = "loopml-secrets"  # noqa: S105 (a name, not a password)
CRONJOB_NAME_LIMIT = 52  # a CronJob's Jobs add 11 characters to its name, which must stay within 63
# A tick compares profiles and may start a retraining pipeline; edit the limits to fit the model.
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
HISTORY = 3  # finished Jobs kept per CronJob, successful and failed each

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CREDENTIAL")
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_JINJA = ("{{", "{%", "{#")
_SLUG_LIMIT = 100
_SECRET_HINTS = {
    "cron": "set it in the crontab yourself (crontab -e) or in the environment cron gives the job",
    "kubernetes": f"put it in the Kubernetes Secret {SECRET_NAME!r}, which every CronJob reads "
    f"(kubectl create secret generic {SECRET_NAME} --from-literal=NAME=VALUE)",
    "airflow": "give it to the workers' environment or an Airflow connection instead",
}


def export_schedule(
    target: str,
    *,
    models: Sequence[str],
    project_dir: Path,
    every_minutes: int = 5,
    image: str | None = None,
    namespace: str = "default",
    command: str = "loopml",
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`{file name: content}` for `target` (cron, kubernetes or airflow), ticking each of `models` every
    `every_minutes` (a divisor of 60) with `command`: the `loopml` executable, split like a shell would (so
    `python -m loopml` works, and a path with spaces must be quoted).

    `project_dir` is the project folder the tick runs in: on this machine for cron and airflow (made absolute),
    inside `image` for kubernetes (an absolute path; it becomes the working folder and `LOOPML_PROJECT_DIR`).
    `env` adds environment variables; names that look like secrets are refused. `image` is required for
    kubernetes, and `namespace` applies to it only. Every problem is an `InvalidInput` of one line.
    """
    if target not in TARGETS:
        raise InvalidInput(f"unknown export target {target!r}; choose one of: {', '.join(TARGETS)}")
    names = _check_models(models)
    if isinstance(every_minutes, bool) or every_minutes not in EVERY_MINUTES:
        raise InvalidInput(
            f"every_minutes must divide an hour evenly ({', '.join(map(str, EVERY_MINUTES))}), "
            f"got {every_minutes!r}"
        )
    in_image = target == "kubernetes"
    ticks = _Ticks(
        models=names,
        folder=_check_image_folder(project_dir) if in_image else _check_local_folder(project_dir),
        beat="* * * * *" if every_minutes == 1 else f"*/{every_minutes} * * * *",
        every=every_minutes,
        argv=_check_command(command),
        env=_check_env(env or {}, target),
    )
    if in_image:
        if "LOOPML_PROJECT_DIR" in ticks.env:
            raise InvalidInput("env LOOPML_PROJECT_DIR is set from project_dir; leave it out of env")
        image, namespace = _check_image(image), _check_namespace(namespace)
        return {KUBERNETES_FILE: _cronjobs(ticks, image=image, namespace=namespace)}
    if target == "cron":
        return {CRON_FILE: _crontab(ticks)}
    return {AIRFLOW_FILE: _airflow(ticks)}


@dataclass(frozen=True)
class _Ticks:
    """What every target writes: which models, in which folder, on which beat, with which argv and env."""

    models: list[str]
    folder: str  # absolute, POSIX
    beat: str  # cron, UTC
    every: int
    argv: list[str]  # the loopml executable
    env: dict[str, str]

    def tick(self, model: str) -> list[str]:
        return [*self.argv, "agent", "tick", "--model", model]


# -- cron -----------------------------------------------------------------------------------------------------


def _crontab(ticks: _Ticks) -> str:
    lines = [
        f"# LoopML automation: `loopml agent tick --model NAME` every {ticks.every} minute(s), for each model "
        "below.",
        f"# Generated by `loopml agent export --target cron` (LoopML {__version__}) for {ticks.folder}.",
        f"# Add it to your crontab: (crontab -l; cat {CRON_FILE}) | crontab -",
        "# The tick evaluates the model's own schedule and triggers; this file only gives it a steady beat.",
        "# flock -n skips a tick while the model's previous one still runs (util-linux; macOS: brew install flock).",
        "# cron's PATH is short (/usr/bin:/bin): export with --command /absolute/path/to/loopml if needed.",
        "# CRON_TZ applies to every line after it in the crontab.",
        "CRON_TZ=UTC",
    ]
    prefix = [f"{key}={shlex.quote(value)}" for key, value in ticks.env.items()]
    for model in ticks.models:
        slug = _slug(model)
        lock = f"{HOME_DIR}/agent-{slug}.lock"
        log = f"{HOME_DIR}/logs/agent-{slug}.log"
        run = " ".join([*prefix, "flock", "-n", shlex.quote(lock), shlex.join(ticks.tick(model))])
        shell = (
            f"cd {shlex.quote(ticks.folder)} && mkdir -p {shlex.quote(f'{HOME_DIR}/logs')} && "
            f"{run} >> {shlex.quote(log)} 2>&1"
        )
        if "\\%" in shell:  # cron would read the backslash as escaping the %, not as itself
            raise InvalidInput(f"a backslash before a % cannot be written in a crontab: {shell!r:.120}")
        # cron turns an unescaped % into a newline (and removes the backslash of an escaped one).
        lines.append(f"{ticks.beat} {shell.replace('%', chr(92) + '%')}")
    return "\n".join(lines) + "\n"


# -- kubernetes -----------------------------------------------------------------------------------------------


def _cronjobs(ticks: _Ticks, *, image: str, namespace: str) -> str:
    names: dict[str, str] = {}
    for model in ticks.models:
        name = resource_name(f"loopml-agent-{model}", limit=CRONJOB_NAME_LIMIT)
        if name in names:
            raise InvalidInput(
                f"models {names[name]!r} and {model!r} both become the CronJob name {name!r}; "
                "export them one at a time into different namespaces"
            )
        names[name] = model
    documents = [
        _cronjob(ticks, name=name, model=model, image=image, namespace=namespace)
        for name, model in names.items()
    ]
    header = (
        f"# LoopML automation: one CronJob per model runs `loopml agent tick --model NAME` every {ticks.every} "
        "minute(s).\n"
        f"# Generated by `loopml agent export --target kubernetes` (LoopML {__version__}).\n"
        "# Store URLs and credentials (LOOPML_DATABASE_URL, LOOPML_ARTIFACT_URL, ...) come from the Secret\n"
        f"# {SECRET_NAME}: kubectl -n {namespace} create secret generic {SECRET_NAME} --from-literal=NAME=VALUE\n"
    )
    return header + yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, explicit_start=True)


def _cronjob(ticks: _Ticks, *, name: str, model: str, image: str, namespace: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "loopml-agent",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "automation",
        "app.kubernetes.io/managed-by": "loopml",
        "app.kubernetes.io/version": label_value(__version__),
        "loopml/model": label_value(model),
    }
    annotations = {"loopml/model": model, "loopml/exported-by": f"loopml {__version__}"}
    variables = {"LOOPML_PROJECT_DIR": ticks.folder, **ticks.env}
    container = {
        "name": "tick",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ticks.tick(model),
        "workingDir": ticks.folder,
        "env": [{"name": key, "value": value} for key, value in variables.items()],
        "envFrom": [{"secretRef": {"name": SECRET_NAME, "optional": True}}],
        "resources": RESOURCES,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "schedule": ticks.beat,
            "timeZone": "Etc/UTC",
            # Never two ticks of one model at once: a beat that falls while one runs is skipped.
            "concurrencyPolicy": "Forbid",
            # A beat missed by more than one period is dropped (without it, 100 missed beats stop the CronJob).
            "startingDeadlineSeconds": ticks.every * 60,
            "successfulJobsHistoryLimit": HISTORY,
            "failedJobsHistoryLimit": HISTORY,
            "jobTemplate": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "backoffLimit": 0,  # the controller retries itself, at the next beat
                    "template": {
                        "metadata": {"labels": labels, "annotations": annotations},
                        "spec": {
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": USER_ID,
                                "fsGroup": USER_ID,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                        },
                    },
                },
            },
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (`&id001`): the labels are repeated, written out each time."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# -- airflow --------------------------------------------------------------------------------------------------

_DAG_FILE = '''\
"""LoopML automation: one DAG per model runs `loopml agent tick --model NAME` every {every} minute(s).

Generated by `loopml agent export --target airflow` (LoopML {version}).
Copy it into Airflow's dags folder (Airflow 2.4 or later); the workers must be able to run `loopml` there.
The tick evaluates the model's own schedule and triggers and retries what failed itself, so a DAG never
catches up, runs one tick at a time and does not retry.
"""

from __future__ import annotations

import datetime

try:
    from airflow.sdk import DAG  # Airflow 3
except ImportError:  # Airflow 2
    from airflow import DAG
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.bash import BashOperator

# The project: {folder}
SCHEDULE = {beat}
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
# model -> (DAG id, shell command). Each command ends with a space, so Airflow never reads it as the name of a
# template file (a command ending in .sh or .bash).
TICKS = {{
{ticks}}}

for _model, (_dag_id, _command) in TICKS.items():
    with DAG(
        dag_id=_dag_id,
        description=f"loopml agent tick --model {{_model}}",
        schedule=SCHEDULE,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["loopml"],
    ) as _dag:
        BashOperator(task_id="tick", bash_command=_command, retries=0)
    globals()[_dag_id] = _dag
'''


def _airflow(ticks: _Ticks) -> str:
    prefix = "".join(f"{key}={shlex.quote(value)} " for key, value in ticks.env.items())
    lines = []
    for model in ticks.models:
        shell = f"cd {shlex.quote(ticks.folder)} && {prefix}exec {shlex.join(ticks.tick(model))} "
        if any(marker in shell for marker in _JINJA):  # Airflow renders bash_command as a Jinja template
            raise InvalidInput(
                f"the tick command for {model!r} contains {'/'.join(_JINJA)}, which Airflow would read as "
                "a template; move the project or drop that text from command and env"
            )
        lines.append(f"    {model!r}: ({'loopml_agent_' + _slug(model)!r}, {shell!r}),\n")
    return _DAG_FILE.format(
        every=ticks.every,
        version=__version__,
        folder=ticks.folder,
        beat=repr(ticks.beat),
        ticks="".join(lines),
    )


# -- checks ---------------------------------------------------------------------------------------------------


def _check_models(models: Sequence[str]) -> list[str]:
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise InvalidInput(f"models must be a list of model names, got {type(models).__name__}")
    if not models:
        raise InvalidInput("no models to schedule: name at least one model with an automation policy")
    names: list[str] = []
    slugs: dict[str, str] = {}
    for model in models:
        check_key("model", model)
        if model in names:
            raise InvalidInput(f"model {model!r} is listed twice; list each model once")
        slug = _slug(model)
        if slug in slugs:
            raise InvalidInput(f"models {slugs[slug]!r} and {model!r} both become {slug!r} in file names")
        slugs[slug] = model
        names.append(model)
    return names


def _slug(name: str) -> str:
    """`name` as a file-name and DAG-id part; a name that had to change ends with a short hash of itself."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if slug != name or len(slug) > _SLUG_LIMIT:
        slug = f"{slug[:_SLUG_LIMIT]}_{hash_text(name)[:8]}"
    return slug


def _check_command(command: str) -> list[str]:
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(f"command must name the loopml executable (e.g. loopml), got {command!r}")
    _check_text("command", command)
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise InvalidInput(f"command {command!r} does not split like a shell command: {error}") from None
    if not argv[0]:
        raise InvalidInput(f"command must name the loopml executable (e.g. loopml), got {command!r}")
    return argv


def _check_env(env: Mapping[str, str], target: str) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidInput(f"env must map variable names to values, got {type(env).__name__}")
    variables: dict[str, str] = {}
    for key, value in sorted(env.items()):
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidInput(
                f"env name {key!r} is not a variable name (letters, digits and _, not first a digit)"
            )
        if not isinstance(value, str):
            raise InvalidInput(f"env {key} must be a string, got {type(value).__name__}")
        _check_text(f"env {key}", value)
        if any(word in key.upper() for word in _SECRET_WORDS) or _URL_WITH_PASSWORD.search(value):
            raise InvalidInput(
                f"env {key} looks like a secret, and exported files must not hold one: {_SECRET_HINTS[target]}"
            )
        variables[key] = value
    return variables


def _check_text(what: str, text: str) -> None:
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise InvalidInput(f"{what} contains a control character (a newline?): {text!r:.80}")


def _check_local_folder(project_dir: Path) -> str:
    if not isinstance(project_dir, str | Path):
        raise InvalidInput(f"project_dir must be a path, got {type(project_dir).__name__}")
    folder = Path(project_dir).expanduser().resolve().as_posix()
    _check_text("project_dir", folder)
    return folder


def _check_image_folder(project_dir: Path) -> str:
    if not isinstance(project_dir, str | Path):
        raise InvalidInput(f"project_dir must be a path, got {type(project_dir).__name__}")
    folder = PurePosixPath(Path(project_dir).as_posix())
    if not folder.is_absolute():
        raise InvalidInput(
            f"project_dir {str(project_dir)!r} must be the absolute path of the project inside the image"
        )
    _check_text("project_dir", str(folder))
    return str(folder)


def _check_image(image: str | None) -> str:
    if image is None:
        raise InvalidInput(
            "the kubernetes target needs the image to run the tick in (--image REGISTRY/NAME:TAG)"
        )
    if not isinstance(image, str) or not image or any(char.isspace() for char in image):
        raise InvalidInput(f"image must be an image reference such as registry.local/loopml:1, got {image!r}")
    return image


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace):
        raise InvalidInput(
            f"namespace {namespace!r} is not a Kubernetes namespace name (lowercase letters, digits and '-', "
            "at most 63)"
        )
    return namespace
