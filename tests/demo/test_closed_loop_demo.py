"""`loopml demo` end to end: the closed loop on built-in data, a real server and controller, and no process
left behind; then everything the demo made, browsed in the web UI in a real Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from browser import Watched, browsing, local_ui
from loopml.core.settings import load_settings
from loopml.tracking.tracker import Tracker

LOOPML = str(Path(sys.executable).parent / "loopml")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
MAX_PAGES = (
    80  # pages the crawl visits (every section, every model, version, window and run it links to first)
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo's folder once it has run, and what it printed."""
    base = tmp_path_factory.mktemp("demo")
    folder = base / "demo"
    done = subprocess.run(
        [LOOPML, "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        cwd=base,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, done.stdout


def test_the_demo_closes_the_loop_and_cleans_up(demo: tuple[Path, str]) -> None:
    folder, out = demo
    assert "drift alert" in out or "auc-floor" in out, out[-3000:]
    for step in ("triggered", "trained", "rollout_started", "promoted"):
        assert step in out, (step, out[-3000:])
    assert "on labelled traffic" in out
    assert "loopml ui" in out
    assert (folder / "report.html").stat().st_size > 10_000
    assert "Traceback" not in (folder / "agent.log").read_text()
    assert not _processes_in(folder)


def test_the_demo_browses_end_to_end_in_the_ui(demo: tuple[Path, str]) -> None:
    """Crawl the UI over the demo's project from the experiments page, following its links: every page loads
    with no error status and no console error, and every chart draws."""
    folder, _ = demo
    tracker = Tracker(load_settings(project_dir=folder))
    try:
        with local_ui(tracker) as url, browsing() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = Watched(context.new_page())
            visited = _crawl(page, url)
            context.close()
    finally:
        tracker.close()
    assert page.errors == []
    paths = [urlsplit(u).path for u in visited]
    for must in (
        "/ui/experiments",
        "/ui/datasets/transactions",
        "/ui/models/fraud",
        "/ui/deployments/fraud",
        "/ui/monitoring/fraud",
        "/ui/automation",
    ):
        assert must in paths, (must, paths)
    assert any(p.startswith("/ui/runs/") for p in paths)
    assert any(p.startswith("/ui/models/fraud/") for p in paths)  # a version page, with its lineage


def _crawl(page: Watched, url: str) -> list[str]:
    start = f"{url}/ui/experiments"
    queue, seen, visited = deque([start]), {start}, []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    while queue and len(visited) < MAX_PAGES:
        target = queue.popleft()
        response = page.open(target)
        assert response is not None
        assert response.status < 400, (target, response.status)
        states = page.charts()
        assert all(state in ("1", "empty") for state in states), (target, states)
        path = urlsplit(target).path
        if path.count("/") == 2 or path in (
            "/ui/models/fraud",
            "/ui/monitoring/fraud",
            "/ui/deployments/fraud",
        ):
            name = path.strip("/").replace("/", "-")
            page.page.screenshot(path=str(SCREENSHOTS / f"demo-{name}.png"), full_page=True)
        visited.append(target)
        for href in page.page.eval_on_selector_all(
            "a[href]", "links => links.map(a => a.getAttribute('href'))"
        ):
            found = urldefrag(urljoin(target, href)).url
            inside = found.startswith(f"{url}/ui/") and not any(
                part in found for part in ("/artifacts/", "/static/", "order=", "page=")
            )
            if inside and found not in seen:
                seen.add(found)
                queue.append(found)
    return visited


def _processes_in(folder: Path) -> list[str]:
    """Command lines of live processes whose working folder is `folder` (the demo's server and agent)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return found
