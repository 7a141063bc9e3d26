"""The datasets pages: the list, a dataset's versions, a version's schema, profile charts, files and lineage,
and the diff of two versions; errors as HTML pages; escaping; and the charts drawn in a real browser."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.exceptions import StarletteDeprecationWarning

import loopml
from loopml import datasets
from loopml.server.ui.app import local_ui_app
from loopml.tracking.tracker import Tracker

with warnings.catch_warnings():
    # Starlette asks for `httpx2`, which the dev environment does not pin; the test client works with httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

XSS_COLUMN = "<script>alert('column')</script>"
XSS_VALUE = "<img src=x onerror=alert('value')>"


def _sales(rows: int, seed: int, *, extra: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100 + 20 * seed, 15, rows),
            "country": rng.choice(["DE", "FR", "US", XSS_VALUE], rows),
            "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "note": [f"free text note number {i} about the order" for i in range(rows)],
            "fraud": rng.random(rows) < 0.1,
            XSS_COLUMN: rng.integers(0, 5, rows),
        }
    )
    if extra:  # v2: a new column, one dropped, one retyped
        frame["channel"] = rng.choice(["web", "shop"], rows)
        frame = frame.drop(columns=["fraud"])
        frame["amount"] = frame["amount"].round().astype("int64")
    return frame


@pytest.fixture
def project(tracker: Tracker, tmp_path: Path) -> dict[str, Any]:
    """`sales` (two table versions, v1 read by a run that registered a model) and `images` (two folders)."""
    datasets.add("sales", _sales(300, 0, extra=False), message="first cut")
    datasets.add("sales", _sales(450, 1, extra=True))
    with loopml.start_run(experiment="fraud", name="train-sales") as run:
        frame = datasets.load("sales@v1")
        x = frame[["amount"]].to_numpy()
        model = LogisticRegression().fit(x, frame["fraud"].to_numpy())
        loopml.models.register("fraud-model", model, sample=x, onnx=False)
        with loopml.start_run(name="train-step", nested=True):  # a pipeline step: lineage via its parent
            loopml.models.register("step-model", model, sample=x, onnx=False)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (folder / "b.txt").write_text("beta")
    datasets.add("team/images", folder)
    (folder / "a.txt").write_text("ALPHA")
    (folder / "b.txt").unlink()
    (folder / "c.txt").write_text("gamma")
    datasets.add("team/images", folder)
    (tmp_path / "raw.txt").write_text("one line")
    datasets.add("raw logs: 2024", tmp_path / "raw.txt")
    return {"run_id": run.run_id}


@pytest.fixture
def client(tracker: Tracker, project: dict[str, Any]) -> TestClient:
    return TestClient(local_ui_app(tracker), base_url="http://127.0.0.1")


def _cells(html: str, css: str) -> list[str]:
    """The text of the `<td>` cells of the table with class `css`."""
    table = re.search(rf'<table class="grid {css}">(.*?)</table>', html, re.S)
    assert table is not None, css
    return _texts(table.group(1))


def _texts(fragment: str) -> list[str]:
    cells = re.findall(r"<td[^>]*>(.*?)</td>", fragment, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in cells]


def test_list_shows_every_dataset_with_its_newest_version(client: TestClient) -> None:
    response = client.get("/ui/datasets")
    assert response.status_code == 200
    html = response.text
    assert 'href="/ui/datasets/sales"' in html
    assert 'href="/ui/datasets/sales/v2"' in html
    assert 'href="/ui/datasets/team/images/v2"' in html
    sales = re.search(r'<tr data-dataset="sales">(.*?)</tr>', html, re.S)
    assert sales is not None
    cells = _texts(sales.group(1))
    assert cells[:3] == ["sales", "2", "v2"]
    assert cells[3] == "table"
    assert cells[6] == "450"  # the newest version's rows


def test_dataset_page_lists_versions_newest_first_with_readers(
    client: TestClient, project: dict[str, Any]
) -> None:
    response = client.get("/ui/datasets/sales")
    assert response.status_code == 200
    html = response.text
    assert re.findall(r'<tr data-version="(v\d+)">', html) == ["v2", "v1"]
    cells = _cells(html, "versions")
    assert cells[0] == "v2"
    assert cells[5] == "450"  # rows
    assert cells[6] == "6"  # columns
    assert "first cut" in html
    assert f'href="/ui/runs/{project["run_id"]}"' in html
    assert "train-sales" in html
    # the diff form defaults to the two newest versions
    assert 'action="/ui/datasets/sales/diff"' in html
    assert '<option value="v1" selected>' in html
    assert '<option value="v2" selected>' in html
    assert 'class="chart"' in html  # rows per version


def test_version_page_shows_schema_profile_files_and_lineage(
    client: TestClient, project: dict[str, Any]
) -> None:
    response = client.get("/ui/datasets/sales/v1")
    assert response.status_code == 200
    html = response.text
    columns = re.findall(r'<tr data-column="([^"]+)">', html)
    assert columns[:5] == ["amount", "country", "when", "note", "fraud"]
    amount = re.search(r'<tr data-column="amount">(.*?)</tr>', html, re.S)
    assert amount is not None
    assert "double" in amount.group(1)
    assert "numeric" in amount.group(1)
    assert html.count('<figure class="chart"') == 6  # every column charted
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html)
    assert captions[:5] == [
        "amount · numeric",
        "country · categorical",
        "when · datetime",
        "note · text",
        "fraud · boolean",
    ]
    assert "data.parquet" in html  # the version's file
    assert _cells(html, "readers")[0].startswith(f"train-sales {project['run_id'][:8]}")
    assert f'href="/ui/runs/{project["run_id"]}"' in html
    assert re.findall(r'href="/ui/models/([^"]+)"', html) == [
        "step-model/v1",
        "fraud-model/v1",
    ]  # newest first
    latest = client.get("/ui/datasets/sales/latest")
    assert latest.status_code == 200
    assert "sales@v2" in latest.text
    assert "channel" in latest.text


def test_folder_versions_and_names_with_slashes(client: TestClient) -> None:
    page = client.get("/ui/datasets/team/images")
    assert page.status_code == 200
    assert re.findall(r'<tr data-version="(v\d+)">', page.text) == ["v2", "v1"]
    version = client.get("/ui/datasets/team/images/v1")
    assert version.status_code == 200
    assert client.get("/ui/datasets/team%2Fimages/v1").status_code == 200  # as other pages may quote it
    assert _cells(version.text, "files")[0::3] == ["a.txt", "b.txt"]
    diff = client.get("/ui/datasets/team/images/diff", params={"old": "v1", "new": "v2"})
    assert diff.status_code == 200
    assert re.findall(r"<li[^>]*>(.*?)</li>", diff.text) == [
        "c.txt",
        "b.txt",
        "a.txt",
    ]  # added, removed, changed


def test_names_with_spaces_and_colons_are_linked_quoted(client: TestClient) -> None:
    listing = client.get("/ui/datasets/").text  # the trailing slash shows the list too
    assert 'href="/ui/datasets/raw%20logs%3A%202024"' in listing
    assert 'href="/ui/datasets/raw%20logs%3A%202024/v1"' in listing
    version = client.get("/ui/datasets/raw%20logs%3A%202024/v1")
    assert version.status_code == 200
    assert "raw logs: 2024@v1" in version.text
    assert _cells(version.text, "files")[0] == "raw.txt"


def test_diff_shows_rows_schema_statistics_and_overlaid_distributions(client: TestClient) -> None:
    response = client.get("/ui/datasets/sales/diff", params={"old": "v1", "new": "v2"})
    assert response.status_code == 200
    html = response.text
    assert "+150" in html
    assert "300 → 450" in html
    schema = _cells(html, "schema-changes")
    assert schema[:2] == ["channel", "added"]
    assert schema[4:6] == ["fraud", "removed"]
    assert schema[8:12] == ["amount", "type", "double", "int64"]
    stats = re.findall(r'<tr data-column="([^"]+)">', html)
    assert "amount" in stats
    assert "country" in stats
    charts = re.findall(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert len(charts) == 5  # the columns in both versions
    assert all('"label":"v1"' in c and '"label":"v2"' in c for c in charts)
    # numbers given without the v work too
    assert client.get("/ui/datasets/sales/diff?old=1&new=2").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/ui/datasets/nope",
        "/ui/datasets/nope/v1",
        "/ui/datasets/sales/v9",
        "/ui/datasets/sales/v0",
        "/ui/datasets/sales/v1/extra",
        "/ui/datasets/sales/diff?old=v1&new=v7",
    ],
)
def test_unknown_datasets_and_versions_are_404_pages(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "Not found" in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "query", ["", "?old=v1", "?old=v1&new=banana", "?old=-3&new=v2", "?old=v1&new=v99999999999999"]
)
def test_bad_diff_parameters_are_400_pages(client: TestClient, query: str) -> None:
    response = client.get(f"/ui/datasets/sales/diff{query}")
    assert response.status_code == 400
    assert "Cannot show this page" in response.text
    assert "version" in response.text


def test_names_and_values_are_escaped(client: TestClient) -> None:
    for path in ("/ui/datasets/sales/v1", "/ui/datasets/sales/diff?old=v1&new=v2"):
        html = client.get(path).text
        assert XSS_COLUMN not in html
        assert XSS_VALUE not in html
        assert "&lt;script&gt;alert(&#39;column&#39;)&lt;/script&gt;" in html
        # inside the chart JSON, < and > are escaped so no value can close the script tag
        assert "\\u003cimg src=x" in html


def test_empty_project_lists_no_datasets(tracker: Tracker) -> None:
    client = TestClient(local_ui_app(tracker), base_url="http://127.0.0.1")
    response = client.get("/ui/datasets")
    assert response.status_code == 200
    assert "No datasets yet" in response.text


def test_wide_dataset_pages_cap_their_charts(tracker: Tracker) -> None:
    rng = np.random.default_rng(1)
    for version in range(20):
        columns: dict[str, Any] = {}
        for i in range(50):
            columns[f"c{i:02d}"] = (
                rng.choice(["a", "b", "c", f"v{version}"], 500)
                if i % 3 == 2
                else rng.normal(version, 1 + i, 500)
            )
        datasets.add("wide", pd.DataFrame(columns))
    client = TestClient(local_ui_app(tracker), base_url="http://127.0.0.1")
    for path in (
        "/ui/datasets",
        "/ui/datasets/wide",
        "/ui/datasets/wide/v20",
        "/ui/datasets/wide/diff?old=v1&new=v20",
    ):
        assert client.get(path).status_code == 200, path  # timings: bench/ui.py, not a test threshold
    version = client.get("/ui/datasets/wide/v20").text
    assert version.count('<figure class="chart"') == 40
    assert "not charted: c40, c41" in version
    diff = client.get("/ui/datasets/wide/diff?old=v1&new=v20").text
    assert diff.count('<figure class="chart"') == 40


def test_version_and_diff_pages_draw_every_chart(ui: str, page: Any, project: dict[str, Any]) -> None:
    for path in ("/ui/datasets/sales/v1", "/ui/datasets/sales/diff?old=v1&new=v2", "/ui/datasets/sales"):
        response = page.open(f"{ui}{path}")
        assert response.status == 200, path
        drawn = page.charts()
        assert drawn, path
        assert all(c == "1" for c in drawn), (path, drawn)
        assert page.canvases_drawn() > 0, path
    # the diff form on the dataset page leads to the diff page
    page.open(f"{ui}/ui/datasets/sales")
    page.page.click("form.diff-pick button[type=submit]")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("/ui/datasets/sales/diff?old=v1&new=v2")
    assert all(c == "1" for c in page.charts())
