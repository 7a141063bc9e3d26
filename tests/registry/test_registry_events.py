"""Registry webhooks and `loopml.toml` gate policies; compare and validate against a signature."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.core.errors import InvalidInput
from loopml.registry import webhooks
from loopml.registry.promotion import PromotionRefused
from loopml.registry.signature_check import SignatureMismatch
from loopml.tracking.tracker import Tracker


class Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def rows(seed: int, n: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": rng.normal(0, 1, n), "kind": rng.choice(["a", "b"], n)})
    return frame, (frame["amount"] > 0).astype(int)


def model(seed: int) -> LogisticRegression:
    x, y = rows(seed)
    return LogisticRegression().fit(x[["amount"]], y)


def test_events_reach_webhooks_signed(
    tracker: Tracker, receiver: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tracker.settings.project_dir
    (project / "loopml.toml").write_text(
        f'[[registry.webhooks]]\nurl = "{receiver}"\nsecret_env = "HOOK_SECRET"\n'
    )
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    sent: list[threading.Thread] = []
    original = webhooks.notify
    monkeypatch.setattr(webhooks, "notify", lambda *a, **k: sent.extend(original(*a, **k)) or sent)
    x, _ = rows(0)
    loopml.models.register("fraud", model(0), sample=x[["amount"]])
    loopml.models.set_alias("fraud", "champion", 1, reason="first")
    for thread in sent:
        thread.join(10)
    events = {json.loads(body)["event"]: (headers, body) for headers, body in Receiver.received}
    assert sorted(events) == ["alias_moved", "version_registered"]  # each is posted from its own thread
    headers, raw = events["alias_moved"]
    assert headers["x-loopml-signature"] == webhooks.signature("s3cret", raw)
    assert json.loads(raw)["to_version"] == 1


def test_a_dead_webhook_never_fails_a_registration(tracker: Tracker) -> None:
    (tracker.settings.project_dir / "loopml.toml").write_text(
        '[[registry.webhooks]]\nurl = "http://127.0.0.1:9/nothing-listens"\n'
    )
    x, _ = rows(0)
    assert loopml.models.register("fraud", model(0), sample=x[["amount"]]).created


def test_gate_policy_from_the_project_file(tracker: Tracker) -> None:
    (tracker.settings.project_dir / "loopml.toml").write_text(
        "[models.fraud.gates.champion]\nthresholds = { log_loss = 0.000001 }\n"
    )
    x, _ = rows(0)
    loopml.models.register("fraud", model(0), sample=x[["amount"]])
    held, label = rows(9)
    with pytest.raises(PromotionRefused, match="threshold log_loss"):
        loopml.models.promote("fraud", 1, X=held[["amount"]], y=label)
    (tracker.settings.project_dir / "loopml.toml").write_text("[models.fraud.gates.champion]\nmin_dlta = 1\n")
    with pytest.raises(InvalidInput, match="unknown key"):
        loopml.models.promote("fraud", 1, X=held[["amount"]], y=label)


def test_compare_and_validate(tracker: Tracker) -> None:
    x, _ = rows(0)
    loopml.models.register("fraud", model(0), sample=x[["amount"]])
    loopml.models.register("fraud", model(1), sample=x[["amount"]])
    held, label = rows(7)
    scores = loopml.models.compare("fraud", "v1", "v2", X=held[["amount"]], y=label)
    assert set(scores) == {"v1", "v2"}
    assert 0.9 < scores["v1"].metrics["roc_auc"] <= 1.0
    good = loopml.models.validate("fraud@v1", pd.DataFrame({"amount": [1, 2]}))
    assert good["amount"].dtype == "float64"
    with pytest.raises(SignatureMismatch, match="amount"):
        loopml.models.validate("fraud@v1", pd.DataFrame({"other": [1.0]}))
