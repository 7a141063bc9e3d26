"""A real headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright) and the local UI served for it.

    with local_ui(tracker) as url, browsing() as browser: ...

The flags keep Chromium off the network (this machine refuses everything but loopback) and quiet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from loopml.server.ui.app import local_ui_app
from loopml.tracking.tracker import Tracker

CHROMIUM = os.environ.get("LOOPML_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextlib.contextmanager
def local_ui(tracker: Tracker) -> Iterator[str]:
    """`loopml ui` over `tracker`, as `http://127.0.0.1:PORT` (the pages are under `/ui/`)."""
    from team_server import serving_app  # the tests' own helper module (tests/ is on sys.path)

    with serving_app(local_ui_app(tracker)) as url:
        yield url


@contextlib.contextmanager
def browsing() -> Iterator[Any]:
    """A launched headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A browser page that records console errors and page exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))

    def open(self, url: str) -> Any:
        """Go to `url` and wait for its scripts; the response."""
        response = self.page.goto(url)
        self.page.wait_for_load_state("load")
        return response

    def charts(self) -> list[str]:
        """Each chart's state after drawing: "1" drawn, "empty" no data, "error" failed, "" not drawn."""
        return list(
            self.page.eval_on_selector_all("figure.chart", "fs => fs.map(f => f.dataset.rendered || '')")
        )

    def canvases_drawn(self) -> int:
        """Canvases with at least one non-transparent pixel."""
        return int(
            self.page.evaluate(
                """() => [...document.querySelectorAll('figure.chart canvas')].filter(c => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
                    return false; }).length"""
            )
        )
