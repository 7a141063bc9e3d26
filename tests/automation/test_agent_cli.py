"""The real `loopml agent` CLI: tick, trigger, status, timeline, a bad policy, and a controller killed
mid-training whose retrain another controller finishes (not run twice at once, counted as an attempt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Project
from loopml.automation.store import AutomationStore

LOOPML = str(Path(sys.executable).parent / "loopml")


def _cli(project: Project, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [LOOPML, *args], cwd=project.folder, capture_output=True, text=True, timeout=300, env=_env()
    )
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOOPML_PROJECT_DIR", None)
    return env


def test_trigger_tick_status_and_timeline_from_the_command_line(project: Project) -> None:
    project.policy("")
    _cli(project, "agent", "trigger", "toy", "--reason", "new features shipped")
    ticked = _cli(project, "agent", "tick", "--json")
    outcomes = json.loads(ticked.stdout)
    assert [(o["model"], o["action"], o["phase"]) for o in outcomes] == [("toy", "promoted", "idle")]
    status = json.loads(_cli(project, "agent", "status", "--json").stdout)
    assert status["toy"]["phase"] == "idle"
    told = _cli(project, "timeline", "toy").stdout
    assert "manual retrain requested: new features shipped" in told
    assert "promoted" in told
    assert "toy@v2" in told
    story = json.loads(_cli(project, "timeline", "toy", "--json").stdout)
    assert [e["kind"] for e in story] == [
        "manual_request",
        "triggered",
        "training_started",
        "trained",
        "promoted",
    ]


def test_a_bad_policy_is_refused_with_its_key_and_exit_code_2(project: Project) -> None:
    project.policy("", pipeline="toy_pipeline.py:nowhere")
    done = _cli(project, "agent", "tick", check=False)
    assert done.returncode == 2
    assert "[models.toy.automation] pipeline" in done.stderr
    assert "nowhere" in done.stderr
    cases = {
        '[models.toy.automation.triggers]\nschedule = "61 * * * *"': "[models.toy.automation.triggers] schedule",
        "params = { depht = 3 }": "has no param depht",
        '[models.toy.automation.rollout]\nstrategy = "yolo"': "[models.toy.automation.rollout] strategy",
    }
    for body, message in cases.items():
        project.policy(body)
        done = _cli(project, "agent", "tick", check=False)
        assert done.returncode == 2, (body, done.stdout, done.stderr)
        assert message in done.stderr, (body, done.stderr)
        assert "Traceback" not in done.stderr
    project.policy("", extra="[models.toy.gates.champion]\nthresholds = { auc = 0.8 }\n")
    done = _cli(project, "agent", "tick", check=False)
    assert done.returncode == 2
    assert "produces no metric auc" in done.stderr


def test_a_controller_killed_mid_training_is_taken_over_after_its_lease_expires(project: Project) -> None:
    project.policy("params = { sleep_s = 60.0 }\nretries = 1\nretry_delay_minutes = 0")
    _cli(project, "agent", "trigger", "toy")
    agent = subprocess.Popen(
        [LOOPML, "agent", "tick"],
        cwd=project.folder,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = AutomationStore(project.tracker.stores.db)
    deadline = time.monotonic() + 120
    while "training_started" not in [e.kind for e in store.events("toy")]:
        assert agent.poll() is None, agent.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)  # inside the pipeline's sleeping step
    os.kill(agent.pid, signal.SIGKILL)
    agent.communicate(timeout=30)
    assert store.state("toy").phase == "training"
    # Within the lease nobody else acts; once it expired, the next controller finds the training unfinished.
    project.clock.now = int(time.time() * 1000)
    assert project.controller().tick()[0].action == "busy"
    project.policy("retries = 1\nretry_delay_minutes = 0")
    project.clock.now = int(time.time() * 1000) + 400_000
    outcome = project.controller().tick()[0]
    assert outcome.action == "promoted", outcome
    kinds = [e.kind for e in store.events("toy")]
    assert kinds.count("training_started") == 2
    failed = store.events("toy", kinds=["training_failed"])
    assert len(failed) == 1
    assert "stopped before it finished" in failed[0].message


def test_the_agent_runs_inside_loopml_serve_and_the_server_follows_its_promotion(project: Project) -> None:
    import httpx

    project.policy("")
    port = _free_port()
    server = subprocess.Popen(
        [
            LOOPML,
            "serve",
            "toy@champion",
            "--port",
            str(port),
            "--poll-s",
            "0.5",
            "--agent",
            "--agent-interval",
            "1",
        ],
        cwd=project.folder,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        row = {"x0": 0.1, "x1": -0.2, "x2": 0.3, "x3": 0.0}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            _wait_for(lambda: client.get("/v2/health/ready").status_code == 200, server)
            assert client.post("/predict/toy", json=[row]).headers["x-model-version"] == "1"
            _cli(project, "agent", "trigger", "toy", "--reason", "inside the server")
            store = AutomationStore(project.tracker.stores.db)
            _wait_for(lambda: "promoted" in [e.kind for e in store.events("toy")], server)
            _wait_for(
                lambda: client.post("/predict/toy", json=[row]).headers["x-model-version"] == "2", server
            )
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert b"Traceback" not in err


def _wait_for(condition: object, process: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        import httpx

        try:
            if condition():  # type: ignore[operator]
                return
        except (OSError, httpx.TransportError):  # not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_export_writes_a_schedule_for_each_target(project: Project) -> None:
    project.policy("")
    out = project.folder / "schedules"
    _cli(project, "agent", "export", "--target", "cron", "-o", str(out))
    crontab = (out / "loopml-agent.crontab").read_text()
    assert "agent tick --model toy" in crontab
    assert "flock -n" in crontab
    _cli(project, "agent", "export", "--target", "kubernetes", "--image", "registry/loopml:1", "-o", str(out))
    assert "concurrencyPolicy: Forbid" in (out / "loopml-agent-cronjobs.yaml").read_text()
    _cli(project, "agent", "export", "--target", "airflow", "-o", str(out))
    compile((out / "loopml_agent_dags.py").read_text(), "dags", "exec")
    missing = _cli(project, "agent", "export", "--target", "kubernetes", "-o", str(out), check=False)
    assert missing.returncode == 2
    assert "image" in missing.stderr
