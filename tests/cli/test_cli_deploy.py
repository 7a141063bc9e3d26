"""End-to-end: `loopml deploy export` with the real executable, and the exported image's command run for real.

No Docker engine runs here, so the last test does what the image would do: a fresh virtual environment gets
the Dockerfile's `RUN pip install ...` (the generated requirements.txt, with the LoopML wheel of this source
tree bundled by `--loopml-wheel`), then the Dockerfile's CMD runs in its WORKDIR with its ENV, bound to
127.0.0.1 instead of 0.0.0.0, and answers health, OIP V2 and MLflow requests over HTTP.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from test_cli import cli

import loopml
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker

REPO = Path(__file__).resolve().parents[2]
APP = "/app"  # the image's folder that the build context stands for
READY_WAIT_S = 180  # a guard against a server that never comes up, not a performance threshold


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project holding fraud v1 and v2, with champion on v2."""
    folder = tmp_path / "source"
    folder.mkdir()
    assert cli(folder, "init").returncode == 0
    tracker = Tracker(load_settings(project_dir=folder))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(100, 20, 80), "age": rng.integers(18, 80, 80)})
    label = (frame["amount"] > 100).astype(int)
    try:
        for c in (1.0, 0.1):
            model = LogisticRegression(C=c, max_iter=1000).fit(frame, label)
            loopml.models.register("fraud", model, sample=frame, tracker=tracker)
        loopml.models.set_alias("fraud", "champion", 2, tracker=tracker)
    finally:
        tracker.close()
    return folder


def test_export_kubernetes_prints_what_it_wrote(project: Path) -> None:
    result = cli(project, "deploy", "export", "fraud@champion", "-t", "kubernetes", "-o", "../out", "--json")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert (done["model"], done["version"], done["serves"], done["image"]) == (
        "fraud",
        2,
        "fraud@champion",
        "loopml-fraud:v2",
    )
    out = project.parent / "out"
    assert {
        "Dockerfile",
        "requirements.txt",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/hpa.yaml",
    } <= set(done["files"])
    assert yaml.safe_load((out / "k8s" / "hpa.yaml").read_text())["kind"] == "HorizontalPodAutoscaler"
    again = cli(project, "deploy", "export", "fraud@champion", "-o", "../out")
    assert again.returncode == 2
    forced = cli(project, "deploy", "export", "fraud@v1", "-o", "../out", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "docker build -t loopml-fraud:v1" in forced.stdout
    assert not (out / "k8s").exists()  # replaced as a whole


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope@champion"], "no registered model 'nope'"),
        (["fraud@challenger"], "model 'fraud' has no challenger"),
        (["fraud@champion", "--target", "helm"], "unsupported deployment target 'helm'"),
        (["not a ref"], "not a model reference"),
        (["fraud@champion", "-o", "full"], "is not empty; choose a new folder or pass --force"),
    ],
)
def test_bad_input_exits_2_with_one_line(project: Path, args: list[str], message: str) -> None:
    (project / "full").mkdir()
    (project / "full" / "notes.txt").write_text("mine")
    command = ["deploy", "export", *args]
    if "-o" not in args:
        command += ["-o", "out"]
    result = cli(project, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (project / "out").exists()
    assert [p.name for p in (project / "full").iterdir()] == ["notes.txt"]


# -- the image's command, run from a clean virtual environment ----------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def in_context(path: str, context: Path) -> str:
    """An image path under /app as the same path in the build context."""
    return str(context / Path(path).relative_to(APP)) if path.startswith(APP) else path


def http(url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers.items())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


@pytest.mark.slow
def test_dockerfile_command_serves_from_a_clean_virtualenv(project: Path, tmp_path: Path) -> None:
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("needs LoopML's source tree to build the wheel the image installs")
    started = time.monotonic()
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, REPO],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("loopml-*.whl")
    port = free_port()
    context = tmp_path / "image"
    exported = cli(
        project,
        "deploy",
        "export",
        "fraud@champion",
        "-o",
        str(context),
        "--port",
        str(port),
        "--loopml-wheel",
        str(wheel),
    )
    assert exported.returncode == 0, exported.stderr

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOOPML_") and k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    workdir, command, health = context, [""], [""]
    for line in (context / "Dockerfile").read_text().splitlines():
        instruction, _, rest = line.partition(" ")
        if instruction == "WORKDIR":
            workdir = Path(in_context(rest, context))
        elif instruction == "ENV":
            env.update(
                (key, in_context(value, context))
                for key, _, value in (p.partition("=") for p in shlex.split(rest))
            )
        elif instruction == "RUN" and rest.startswith("pip "):
            installed = subprocess.run(
                [venv / "bin" / "python", "-m", *shlex.split(rest)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert installed.returncode == 0, installed.stderr[-3000:]
        elif instruction == "CMD":
            command = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            health = json.loads(rest.partition(" CMD ")[2])
    setup_s = time.monotonic() - started
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None
    assert Path(executable).parent == venv / "bin"  # the clean venv's loopml, not this one's
    assert command[command.index("--host") + 1] == "0.0.0.0"
    command[command.index("--host") + 1] = "127.0.0.1"  # tests bind to the loopback interface only

    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            assert server.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
            try:
                if http(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"not ready after {READY_WAIT_S} s: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        checked = subprocess.run(health, cwd=workdir, env=env, check=False, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr

        row = {"amount": 150.0, "age": 33}
        source = Tracker(load_settings(project_dir=project))
        try:
            expected = loopml.models.load("fraud@champion", tracker=source).predict(pd.DataFrame([row]))
        finally:
            source.close()
        tensors = {
            "inputs": [
                {"name": "amount", "shape": [1], "datatype": "FP64", "data": [row["amount"]]},
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [row["age"]]},
            ]
        }
        status, answer, headers = http(f"{base}/v2/models/fraud/infer", tensors)
        assert status == 200, answer
        assert answer["model_version"] == "2"
        assert "2" in {k.lower(): v for k, v in headers.items()}["x-model-version"]
        prediction = next(o for o in answer["outputs"] if o["name"] == "prediction")
        assert prediction["data"] == expected.tolist()
        status, answer, _ = http(
            f"{base}/invocations", {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
        )
        assert status == 200, answer
        assert answer["predictions"] == expected.tolist()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"clean venv: wheel + export + venv + pip install took {setup_s:.1f} s")
