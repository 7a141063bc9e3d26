"""The UI under hostile input: non-ASCII digits, file names a header cannot carry, active content in
artifacts, very long pipelines, many artifacts; none of it is a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import loopml
from loopml.server.ui import charts
from loopml.server.ui.runs import MAX_PREVIEWS
from loopml.tracking.tracker import Tracker


@pytest.mark.parametrize(
    "path",
    [
        "/ui/automation?size=%C2%B2",  # a superscript two: a digit to str.isdigit, not to int()
        "/ui/automation/%C2%B2",
        "/ui/experiments/Default?page=%D9%A3",  # an Arabic-Indic three
        "/ui/deployments/x?hours=%C2%B2",
        "/ui/experiments/Default?size=99999999999999999999999",
    ],
)
def test_number_parameters_take_ascii_digits_only(http: httpx.Client, path: str) -> None:
    with loopml.start_run("Default"):
        pass
    page = http.get(path)
    assert page.status_code in (400, 404)
    assert "Traceback" not in page.text


def test_artifacts_with_any_name_and_active_content(
    http: httpx.Client, tracker: Tracker, tmp_path: Path
) -> None:
    for name, body in (
        ("模型.bin", b"\x00\x01"),
        ("x.svg", b"<svg onload=alert(1)/>"),
        ("sp ace#?.txt", b"ok"),
    ):
        (tmp_path / name).write_bytes(body)
    with loopml.start_run("files", tracker=tracker) as run:
        for name in ("模型.bin", "x.svg", "sp ace#?.txt"):
            loopml.log_artifact(tmp_path / name)
    unicode = http.get(f"/ui/runs/{run.run_id}/artifacts/%E6%A8%A1%E5%9E%8B.bin")
    assert unicode.status_code == 200
    assert "filename*=UTF-8''%E6%A8%A1%E5%9E%8B.bin" in unicode.headers["content-disposition"]
    svg = http.get(f"/ui/runs/{run.run_id}/artifacts/x.svg")
    assert svg.headers["content-type"] == "application/octet-stream"  # never rendered in the UI's origin
    assert svg.headers["content-disposition"].startswith("attachment")
    assert svg.headers["cache-control"] == "no-store"
    page = http.get(f"/ui/runs/{run.run_id}")
    assert f'/ui/runs/{run.run_id}/artifacts/sp%20ace%23%3F.txt"' in page.text  # the link is quoted
    assert http.get(f"/ui/runs/{run.run_id}/artifacts/sp%20ace%23%3F.txt").text == "ok"


def test_a_run_page_previews_a_bounded_number_of_artifacts(
    http: httpx.Client, tracker: Tracker, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(MAX_PREVIEWS + 5):
        (folder / f"{i:03d}.txt").write_text(f"text {i}")
    with loopml.start_run("files", tracker=tracker) as run:
        loopml.log_artifacts(folder)
    page = http.get(f"/ui/runs/{run.run_id}")
    assert page.text.count('data-kind="text"') == MAX_PREVIEWS
    assert page.text.count('data-kind="file"') == 5


def test_a_chain_of_thousands_of_steps_lays_out() -> None:
    upstream = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(5000)}
    layout = charts.graph(upstream)
    assert max(n.x for n in layout.nodes) > 0
    assert len(layout.edges) == 4999
    cycle = charts.graph({"a": ["b"], "b": ["a"], "c": []})  # never loops: drawn somewhere
    assert {n.key for n in cycle.nodes} == {"a", "b", "c"}
