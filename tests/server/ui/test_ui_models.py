"""Models pages: the registry list, a model's versions with its alias history (moves, refusals and the gates'
verdicts) and metrics across versions, a version's page with its signature, package facts and lineage graph;
roles per model on the team server; and the pages in a real browser."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request

import loopml
from loopml.registry.promotion import PromotionRefused
from loopml.registry.records import ModelVersion
from loopml.registry.store import RegistryStore
from loopml.server.accounts import AccountStore
from loopml.server.ui.app import local_ui_app
from loopml.server.ui.models import lineage_graph
from loopml.tracking.tracker import Tracker

with warnings.catch_warnings():
    # Starlette asks for `httpx2`, which the dev environment does not pin; its test client works with httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Watched

HOSTILE = "<script>alert('x')</script>"
FEATURES = ["amount", "noise"]


@dataclass(frozen=True)
class Registry:
    """What the fixture registered: fraud v1 (good, champion) and v2 (worse, refused, canary challenger),
    each from a run that read a dataset version; churn v1 registered outside a run."""

    first_run: str
    second_run: str


def _rows(seed: int, n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": rng.normal(0, 1, n), "noise": rng.normal(0, 1, n)})
    label = ((frame["amount"] + 0.3 * rng.normal(0, 1, n)) > 0).astype(int)
    return frame, label


@pytest.fixture
def registry(tracker: Tracker) -> Registry:
    train, label = _rows(0)
    table = train.assign(label=label)
    loopml.datasets.add("transactions", table, tracker=tracker)
    with loopml.start_run("fraud", "good", tracker=tracker) as first:
        frame = loopml.datasets.load("transactions@v1", tracker=tracker)
        loopml.log_metric("auc", 0.91)
        loopml.log_metric("accuracy", 0.88)
        good = LogisticRegression(max_iter=1000).fit(frame[FEATURES], frame["label"])
        loopml.models.register(
            "fraud", good, sample=frame[FEATURES], description=HOSTILE, tags={"team": HOSTILE}
        )
    held_out, truth = _rows(2)
    loopml.datasets.add("holdout", held_out.assign(label=truth), tracker=tracker)
    shuffled = label.sample(frac=1, random_state=3).to_numpy()  # labels unrelated to the rows: a worse model
    with loopml.start_run("fraud", "shuffled", tracker=tracker) as second:
        loopml.datasets.load("transactions@v1", tracker=tracker)
        loopml.log_metric("auc", 0.52)
        worse = LogisticRegression(max_iter=1000).fit(train[FEATURES], shuffled)
        loopml.models.register(
            "fraud", worse, sample=train[FEATURES], eval_dataset="holdout@v1", eval_target="label"
        )
    loopml.models.promote("fraud", 1, reason="first champion", tracker=tracker)
    with pytest.raises(PromotionRefused):
        loopml.models.promote(
            "fraud", 2, X=held_out[FEATURES], y=truth, reason="try the shuffled one", tracker=tracker
        )
    loopml.models.deploy("fraud", challenger="v2", mode="canary", share=0.1, tracker=tracker)
    churn = LogisticRegression(max_iter=1000).fit(train[FEATURES], label)
    loopml.models.register("churn", churn, tracker=tracker)
    return Registry(first.run_id, second.run_id)


@pytest.fixture
def client(tracker: Tracker) -> Iterator[TestClient]:
    with TestClient(local_ui_app(tracker), base_url="http://127.0.0.1") as opened:
        yield opened


def _nodes(html: str) -> list[str]:
    return re.findall(r'<g class="node status-\w*" data-node="([^"]+)">', html)


def _specs(html: str) -> list[dict[str, object]]:
    return [json.loads(s) for s in re.findall(r'<script type="application/json">(.*?)</script>', html)]


def test_the_model_list_shows_each_model_with_its_aliases_and_serving(
    client: TestClient, tracker: Tracker, registry: Registry
) -> None:
    RegistryStore(tracker.stores.db).update_model("fraud", description=HOSTILE, owner="risk-team")
    page = client.get("/ui/models")
    assert page.status_code == 200
    fraud = re.search(r'<tr data-model="fraud">(.*?)</tr>', page.text, re.S)
    assert fraud is not None
    row = fraud.group(1)
    assert 'href="/ui/models/fraud/v2">v2</a>' in row  # the latest version
    assert "champion → v1" in row
    assert "canary: champion → v1 (90%), challenger (v2) → v2 (10%)" in row
    assert 'href="/ui/deployments/fraud"' in row
    assert "<td>risk-team</td>" in row
    assert "&lt;script&gt;alert(&#39;x&#39;)" in row  # the description, shortened and escaped
    assert HOSTILE not in page.text
    churn = re.search(r'<tr data-model="churn">(.*?)</tr>', page.text, re.S)
    assert churn is not None
    assert "not deployed" in churn.group(1)


def test_the_model_page_lists_versions_and_every_move_and_refusal(
    client: TestClient, registry: Registry
) -> None:
    page = client.get("/ui/models/fraud")
    assert page.status_code == 200
    versions = re.findall(r'<tr data-version="(\d+)">', page.text)
    assert versions == ["2", "1"]  # newest first
    first = re.search(r'<tr data-version="1">(.*?)</tr>', page.text, re.S)
    assert first is not None
    assert '<span class="alias">champion</span>' in first.group(1)
    assert f'href="/ui/runs/{registry.first_run}"' in first.group(1)
    assert ">0.91</td>" in first.group(1)  # its auc, a key metric column
    outcomes = re.findall(r'<tr data-outcome="(\w+)">', page.text)
    assert outcomes == ["refused", "moved"]  # newest first
    refused = re.search(r'<tr data-outcome="refused">(.*?)</tr>', page.text, re.S)
    assert refused is not None
    assert "try the shuffled one" in refused.group(1)  # why, as the promoter said it
    assert '<span class="badge status-failed">failed</span> <strong>beats v1 on roc_auc</strong>' in (
        refused.group(1)
    )
    assert "scored on given X, y (300 rows)" in refused.group(1)
    assert "first champion" in page.text
    auc = next(s for s in _specs(page.text) if s.get("y_label") == "auc")
    assert auc["x"] == [1.0, 2.0]
    assert auc["series"] == [{"label": "auc", "values": [0.91, 0.52]}]
    assert "Deployment revision 1" in page.text


def test_the_version_page_shows_the_package_and_its_lineage(client: TestClient, registry: Registry) -> None:
    page = client.get("/ui/models/fraud/v1")
    assert page.status_code == 200
    version = loopml.models.get("fraud@v1")
    assert version.content_hash in page.text
    nodes = _nodes(page.text)
    assert nodes == [
        "dataset:transactions@v1",
        f"run:{registry.first_run}",
        "version:v1",
        "alias:champion",
        "deployment:champion",
    ]
    assert 'href="/ui/datasets/transactions/v1"' in page.text
    assert f'href="/ui/runs/{registry.first_run}"' in page.text
    assert page.text.count('marker-end="url(#graph-arrow)"') == 4
    inputs = re.search(r'data-side="inputs">(.*?)</table>', page.text, re.S)
    assert inputs is not None
    assert re.findall(r"<tr><td>(\w+)</td><td>float</td>", inputs.group(1)) == FEATURES
    assert '<span class="badge status-verified">verified</span>' in page.text  # the ONNX copy
    assert "safe format" in page.text
    assert "scikit-learn " in page.text  # the libraries it was saved with
    promotions = re.findall(r'<tr data-outcome="(\w+)">.*?<td>(challenger|holder)</td>', page.text, re.S)
    assert promotions == [("refused", "holder"), ("moved", "challenger")]
    assert "beats v1 on roc_auc" in page.text

    challenger = client.get("/ui/models/fraud/v2")
    assert _nodes(challenger.text) == [
        "dataset:transactions@v1",
        f"run:{registry.second_run}",
        "eval:dataset:holdout@v1",  # the held-out rows its promotions are scored on
        "version:v2",
        "deployment:challenger",
    ]
    assert 'href="/ui/datasets/holdout/v1"' in challenger.text
    assert "challenger (v2) → v2 (10%)" in challenger.text
    assert _nodes(client.get("/ui/models/churn/1").text) == ["version:v1"]  # registered outside a run


def test_a_pipeline_step_version_draws_the_pipeline_run_above_its_run() -> None:
    request = Request({"type": "http", "root_path": "/w/team/ui", "headers": []})
    version = ModelVersion("a/b", 4, "id", "sklearn", "c" * 64, "d" * 64, 0, run_id="step")
    lineage = {
        "run_id": "step",
        "pipeline_run_id": "pipe",
        "git_commit": "0123456789abcdef",
        "datasets": [{"name": "raw", "version": "v7"}, "not a dataset entry"],
    }
    drawn = lineage_graph(request, version, lineage, None, [])
    assert [n.key for n in drawn.nodes] == ["dataset:raw@v7", "pipeline:pipe", "run:step", "version:v4"]
    assert {(a.key, b.key) for a, b in drawn.edges} == {
        ("dataset:raw@v7", "run:step"),
        ("pipeline:pipe", "run:step"),
        ("run:step", "version:v4"),
    }
    hrefs = {n.key: n.href for n in drawn.nodes}
    assert hrefs["dataset:raw@v7"] == "/w/team/ui/datasets/raw/v7"
    assert hrefs["version:v4"] == "/w/team/ui/models/a%2Fb/v4"
    assert next(n.note for n in drawn.nodes if n.key == "run:step") == "commit 0123456789"


def test_a_version_is_addressed_by_number_or_alias(client: TestClient, registry: Registry) -> None:
    canonical = client.get("/ui/models/fraud/v1").text
    for other in ("1", "champion"):
        page = client.get(f"/ui/models/fraud/{other}")
        assert page.status_code == 200
        assert _nodes(page.text) == _nodes(canonical)
    assert "version:v2" in _nodes(client.get("/ui/models/fraud/latest").text)


def test_unknown_and_malformed_addresses_are_404_and_400_pages(
    client: TestClient, registry: Registry
) -> None:
    for path, expected in (
        ("/ui/models/nope", 404),
        ("/ui/models/nope/v1", 404),
        ("/ui/models/fraud/v9", 404),
        ("/ui/models/fraud/challenger", 404),  # an alias nobody set
        ("/ui/models/fraud/v0", 400),
        ("/ui/models/fraud/3.5", 400),
        ("/ui/models/fraud/v99999999999", 400),
        ("/ui/models/fraud/-1", 400),
        ("/ui/models/%20fraud/v1", 400),
        ("/ui/models/fraud/%00", 400),
    ):
        page = client.get(path)
        assert page.status_code == expected, path
        assert "Traceback" not in page.text
        assert 'class="problem"' in page.text
    hostile = client.get("/ui/models/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert hostile.status_code == 404
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile.text  # named in the message, escaped
    assert "<img src=x" not in hostile.text


def test_hostile_descriptions_and_tags_are_escaped(
    client: TestClient, tracker: Tracker, registry: Registry
) -> None:
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    for path in ("/ui/models/fraud", "/ui/models/fraud/v1"):
        page = client.get(path)
        assert HOSTILE not in page.text, path
        assert escaped in page.text, path
    RegistryStore(tracker.stores.db).update_model("fraud", description=HOSTILE, owner=HOSTILE)
    page = client.get("/ui/models/fraud")
    assert page.text.count(escaped) >= 3  # the model's description and owner, v1's description
    assert HOSTILE not in page.text


def test_an_unreadable_package_still_shows_the_record(client: TestClient, tracker: Tracker) -> None:
    store = RegistryStore(tracker.stores.db)
    store.add_version("ghost", flavor="python", content_hash="c" * 64, package_digest="0" * 64)
    store.add_version("ghost", flavor="martian", content_hash="d" * 64, package_digest="0" * 64)
    page = client.get("/ui/models/ghost/v1")
    assert page.status_code == 200
    assert "the model package could not be read" in page.text
    assert "c" * 64 in page.text
    assert '<span class="badge status-unknown">unknown</span>' in page.text  # its ONNX copy
    assert "untrusted code" in page.text  # a python-flavor model runs its own code when loaded
    newer = client.get("/ui/models/ghost/v2")
    assert newer.status_code == 200
    assert "flavor martian is not known to this LoopML" in newer.text


def test_a_reader_of_one_model_sees_only_that_model(tracker: Tracker, registry: Registry) -> None:
    from team_server import serving

    accounts = AccountStore(tracker.stores.db)
    accounts.create_user("rui")
    accounts.grant("rui", "reader", model="fraud")
    reader = accounts.token_for("rui", "laptop")
    accounts.create_user("nobody")
    stranger = accounts.token_for("nobody", "laptop")
    with serving(tracker) as url:
        headers = {"Authorization": f"Bearer {reader}"}
        with httpx.Client(base_url=url, headers=headers) as rui:
            listed = rui.get("/ui/models")
            assert listed.status_code == 200
            assert re.findall(r'<tr data-model="([^"]+)">', listed.text) == ["fraud"]
            assert rui.get("/ui/models/fraud").status_code == 200
            version = rui.get("/ui/models/fraud/v1")
            assert version.status_code == 200
            # Runs belong to the workspace: a reader of the model sees the run's id, not the run.
            assert f"run:{registry.first_run}" in _nodes(version.text)
            assert "run good" not in version.text
            for path in ("/ui/models/churn", "/ui/models/churn/v1"):
                refused = rui.get(path)
                assert refused.status_code == 403, path
                assert "needs the reader role" in refused.text
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {stranger}"}) as nobody:
            assert nobody.get("/ui/models").status_code == 403


def test_model_pages_render_in_a_browser(page: Watched, ui: str, registry: Registry) -> None:
    page.open(f"{ui}/ui/models")
    page.page.click("tr[data-model=fraud] >> text=fraud")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("/ui/models/fraud")
    assert page.charts()
    assert all(state == "1" for state in page.charts())
    assert page.canvases_drawn() == len(page.charts())
    assert page.page.locator("tr[data-outcome=refused]").count() == 1

    page.page.click("tr[data-version='1'] >> text=v1")
    page.page.wait_for_load_state("load")
    assert page.page.url.endswith("/ui/models/fraud/v1")
    graph = page.page.locator("svg.graph")
    assert graph.count() == 1
    assert graph.locator("g.node").count() == 5
    assert graph.locator("g.node[data-node='dataset:transactions@v1'] text").first.text_content() == (
        "transactions@v1"
    )
    box = graph.locator("g.node[data-node='version:v1'] rect").bounding_box()
    assert box is not None
    assert box["width"] > 100  # laid out and drawn, not collapsed


def test_an_empty_registry_says_how_to_register(client: TestClient) -> None:
    page = client.get("/ui/models")
    assert page.status_code == 200
    assert "No registered models yet" in page.text
