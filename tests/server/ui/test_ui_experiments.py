"""Experiments pages: the list, the runs table (filter, sort, pages on the server), comparing runs, a run's
page with its charts, artifacts and pipeline DAG; in a real browser and through plain HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

import loopml
from loopml.tracking.tracker import Tracker

if TYPE_CHECKING:
    from conftest import Watched


@pytest.fixture
def runs(tracker: Tracker, tmp_path: Path) -> list[str]:
    """Twelve runs in `fraud` (auc rises with depth), one with a hostile param and artifacts."""
    (tmp_path / "notes.txt").write_text("<script>alert('x')</script> plain text")
    (tmp_path / "sample.csv").write_text("amount,label\n10,0\n99,1\n")
    made = []
    for i in range(12):
        with loopml.start_run("fraud", f"depth-{i}", tracker=tracker) as run:
            loopml.log_params({"depth": i, "model": "rf" if i % 2 else "gb"})
            for step in range(50):
                loopml.log_metric("loss", 1 / (step + 1 + i), step=step)
            loopml.log_metric("auc", 0.5 + i / 30)
            if i == 11:
                loopml.log_param("note", "<img src=x onerror=alert(1)>")
                loopml.log_artifact(tmp_path / "notes.txt")
                loopml.log_artifact(tmp_path / "sample.csv")
        made.append(run.run_id)
    tracker.flush()
    return made


def _run_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f]{32})"', html)


def test_the_experiments_list_counts_runs(http: httpx.Client, runs: list[str]) -> None:
    page = http.get("/ui/experiments")
    assert page.status_code == 200
    row = re.search(r">fraud</a></td>\s*<td class=\"num\">(\d+)</td>", page.text)
    assert row is not None
    assert row.group(1) == "12"
    assert http.get("/ui/", follow_redirects=False).headers["location"].endswith("/ui/experiments")


def test_the_runs_table_filters_sorts_and_pages_on_the_server(http: httpx.Client, runs: list[str]) -> None:
    everything = http.get("/ui/experiments/fraud", params={"size": "5"})
    assert everything.status_code == 200
    assert len(_run_ids(everything.text)) == 5
    assert "12 runs" in everything.text
    assert 'rel="next"' in everything.text
    last = http.get("/ui/experiments/fraud", params={"size": "5", "page": "3"})
    assert len(_run_ids(last.text)) == 2
    assert 'rel="next"' not in last.text

    best = http.get(
        "/ui/experiments/fraud", params={"filter": "metrics.auc > 0.8", "order": "metrics.auc DESC"}
    )
    ids = _run_ids(best.text)
    assert ids == [runs[11], runs[10]]  # auc 0.867 and 0.833, best first
    assert "2 runs" in best.text
    rf_only = http.get("/ui/experiments/fraud", params={"filter": 'params.model = "rf"'})
    assert sorted(_run_ids(rf_only.text)) == sorted(runs[1::2])


def test_a_bad_filter_is_explained_on_the_page(http: httpx.Client, runs: list[str]) -> None:
    page = http.get("/ui/experiments/fraud", params={"filter": "metrics.auc >"})
    assert page.status_code == 400
    assert 'class="problem"' in page.text
    assert "Traceback" not in page.text
    assert 'value="metrics.auc &gt;"' in page.text  # the box keeps what was typed
    for params in ({"size": "0"}, {"page": "x"}, {"order": "metrics.auc SIDEWAYS"}):
        assert http.get("/ui/experiments/fraud", params=params).status_code == 400
    assert http.get("/ui/experiments/nope").status_code == 404


def test_compare_diffs_params_and_overlays_metrics(http: httpx.Client, runs: list[str]) -> None:
    page = http.get("/ui/compare", params=[("run", runs[0]), ("run", runs[1]), ("run", runs[2])])
    assert page.status_code == 200
    depth = re.search(r'<tr class="diff-changed">\s*<th scope="row">depth</th>', page.text)
    assert depth is not None  # depth differs between the runs
    specs = re.findall(r'<script type="application/json">(.*?)</script>', page.text)
    loss = next(s for s in specs if '"y_label":"loss"' in s)
    assert loss.count('"label":"depth-') == 3  # one line per run on one chart
    assert http.get("/ui/compare", params={"run": runs[0]}).status_code == 400
    assert http.get("/ui/compare", params=[("run", runs[0]), ("run", "0" * 32)]).status_code == 404
    eleven = [("run", r) for r in runs[:11]]
    assert http.get("/ui/compare", params=eleven).status_code == 400


def test_the_run_page_shows_everything_escaped(http: httpx.Client, runs: list[str]) -> None:
    page = http.get(f"/ui/runs/{runs[11]}")
    assert page.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text  # the text artifact's preview
    assert "<td>99</td>" in page.text  # the CSV artifact's rows as a table
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    raw = http.get(f"/ui/runs/{runs[11]}/artifacts/notes.txt")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert "sandbox" in raw.headers["content-security-policy"]
    assert http.get(f"/ui/runs/{runs[11]}/artifacts/../../etc/passwd").status_code in (400, 404)
    assert http.get(f"/ui/runs/{runs[11]}/artifacts/missing.txt").status_code == 404
    assert http.get("/ui/runs/not-a-run").status_code == 404


@loopml.step
def load(n: int) -> list[int]:
    print(f"loading {n} values")
    return list(range(n))


@loopml.step
def double(values: list[int]) -> list[int]:
    return [2 * v for v in values]


@loopml.step
def total(values: list[int], doubled: list[int]) -> int:
    return sum(values) + sum(doubled)


@loopml.pipeline(executor="inline")
def flow(n: int = 4) -> int:
    values = load(n)
    return total(values, double(values))


def test_a_pipeline_run_shows_its_step_dag(http: httpx.Client, tracker: Tracker) -> None:
    result = flow.run({"n": 5}, tracker=tracker)
    page = http.get(f"/ui/runs/{result.run_id}")
    assert page.status_code == 200
    nodes = re.findall(r'<g class="node status-(\w+)" data-node="([^"]+)">', page.text)
    assert sorted(node for _, node in nodes) == ["double", "load", "total"]
    assert {status for status, _ in nodes} == {"finished"}
    assert page.text.count('marker-end="url(#graph-arrow)"') == 3  # load->double, load->total, double->total
    step_run = next(s.run_id for s in result.record.steps if s.node == "load")
    step_page = http.get(f"/ui/runs/{step_run}")
    assert "loading 5 values" in step_page.text  # the step's captured log, previewed
    assert f'href="/ui/runs/{result.run_id}"' in step_page.text  # "part of" its pipeline run


def test_local_ui_refuses_other_hosts(http: httpx.Client) -> None:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own name as the Host.
    assert http.get("/ui/experiments", headers={"host": "evil.example"}).status_code == 400


def test_pages_render_in_a_browser(page: Watched, ui: str, runs: list[str]) -> None:
    page.open(f"{ui}/ui/experiments")
    page.page.click("text=fraud")
    page.page.fill("input[name=filter]", "metrics.auc > 0.8")
    page.page.click("button[type=submit]:has-text('Search')")
    page.page.wait_for_load_state("load")
    assert page.page.locator("tr[data-run]").count() == 2

    for box in page.page.locator("tr[data-run] input[type=checkbox]").all():
        box.check()
    button = page.page.locator("button.compare")
    assert button.text_content() == "Compare 2 runs"
    assert button.is_enabled()
    button.click()
    page.page.wait_for_load_state("load")
    assert "/ui/compare" in page.page.url
    assert page.charts()
    assert all(state == "1" for state in page.charts())
    assert page.canvases_drawn() == len(page.charts())

    page.open(f"{ui}/ui/runs/{runs[11]}")
    assert all(state == "1" for state in page.charts())
    assert page.canvases_drawn() >= 2
    assert page.page.locator("section.artifact[data-kind=table] td:text('99')").count() == 1
