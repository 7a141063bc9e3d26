"""The models a server answers with: each version loaded once, served by the alias it was asked for.

A served name (`fraud`, from `loopml serve fraud@champion`) follows its reference: an alias (or, for a bare
name, the latest version) is looked up again every `poll_s` seconds and when `refresh()` is called. When it
points elsewhere, the new version is loaded and warmed on its input example while the old one keeps
answering; then one reference assignment switches traffic. A request holds the `ServedModel` it started with,
so in-flight requests finish on the old version. A version that fails to load leaves the old one serving and
is reported in `last_error`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.registry.loading import load_version, package_folder
from loopml.registry.records import ModelRef, ModelVersion
from loopml.registry.signature import Signature
from loopml.registry.store import RegistryStore
from loopml.serving.predictor import Predictor, ValidationPolicy
from loopml.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One loaded version and the reference it is served under."""

    name: str
    ref: str  # what the server follows: fraud@champion, fraud (latest), fraud@v3
    version: ModelVersion
    predictor: Predictor
    loaded_time: float

    @property
    def number(self) -> int:
        """The version number."""
        return self.version.version


class ModelPool:
    """Served models by name, reloaded when their alias moves."""

    def __init__(
        self,
        tracker: Tracker,
        refs: Iterable[str],
        *,
        poll_s: float = 2.0,
        policy: ValidationPolicy | None = None,
    ) -> None:
        self.tracker = tracker
        self.refs = _unique_names([ModelRef.parse(r) for r in refs])
        self.poll_s = poll_s
        self.policy = policy or ValidationPolicy()
        self.store = RegistryStore(tracker.stores.db)
        self.last_error: dict[str, str] = {}
        self._served: dict[str, ServedModel] = {}
        self._pinned: dict[tuple[str, int], ServedModel] = {}
        self._lock = threading.Lock()  # serialises loads; reads of `_served` need none
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        """Load every served model (errors propagate: a server must not start without its models), then poll."""
        for ref in self.refs.values():
            self._switch(ref, self.store.get_version(ref))
        if self.poll_s > 0:
            self._poller = threading.Thread(target=self._poll, name="loopml-model-poll", daemon=True)
            self._poller.start()

    def close(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    @property
    def names(self) -> list[str]:
        """The served model names, in the order given."""
        return list(self.refs)

    def ready(self) -> bool:
        """True once every served name has a loaded version."""
        return all(name in self._served for name in self.refs)

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The version serving `name` now, or version `version` of it (loaded on first use)."""
        served = self._served.get(name)
        if served is None:
            known = ", ".join(self.refs) or "none"
            raise NotFound(f"model {name!r} is not served here (served: {known})")
        if version is None or version == served.number:
            return served
        pinned = self._pinned.get((name, version))
        if pinned is not None:
            return pinned
        found = self.store.get_version(ModelRef(name, version=version))
        with self._lock:
            pinned = self._pinned.get((name, version))
            if pinned is None:
                pinned = self._load(found.name + f"@v{version}", found)
                self._pinned[(name, version)] = pinned
        return pinned

    def refresh(self) -> list[tuple[str, int, int]]:
        """Follow every reference now; returns the switches made as (name, from version, to version)."""
        switched = []
        for name, ref in self.refs.items():
            try:
                found = self.store.get_version(ref)
            except LoopMLError as error:  # an alias removed or a store hiccup: keep serving what is loaded
                self._note(name, f"cannot resolve {ref}: {error}")
                continue
            current = self._served.get(name)
            if current is not None and current.version.version_id == found.version_id:
                continue
            try:
                self._switch(ref, found)
            except Exception as error:  # a broken package must not take down the version that works
                self._note(name, f"cannot load {found.ref}: {error}")
                continue
            self.last_error.pop(name, None)
            switched.append((name, current.number if current else 0, found.version))
        return switched

    def _switch(self, ref: ModelRef, version: ModelVersion) -> None:
        with self._lock:
            loaded = self._load(str(ref), version)
            old = self._served.get(ref.name)
            self._served[ref.name] = loaded  # one assignment: requests see the old or the new, never half
        if old is not None:
            log.info("serving %s: v%d -> v%d", ref, old.number, loaded.number)

    def _load(self, ref: str, version: ModelVersion) -> ServedModel:
        model = load_version(self.tracker, version, serving=True)
        signature = Signature.from_dict(version.signature) if version.signature else None
        predictor = Predictor(model, signature, self.policy)
        self._warm(predictor, version)
        return ServedModel(version.name, ref, version, predictor, time.time())

    def _warm(self, predictor: Predictor, version: ModelVersion) -> None:
        """Run the input example once, so the first request does not pay for lazy initialisation."""
        path = package_folder(self.tracker, version) / "input_example.json"
        if predictor.signature is None or not path.is_file():
            return
        import pandas as pd

        example = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame(example["data"], columns=example.get("columns"))
        predictor.predict(predictor.validate(frame))

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one failure
                log.exception("model poll failed")

    def _note(self, name: str, message: str) -> None:
        if self.last_error.get(name) != message:
            log.warning("%s", message)
        self.last_error[name] = message


def _unique_names(refs: list[ModelRef]) -> dict[str, ModelRef]:
    by_name: dict[str, ModelRef] = {}
    for ref in refs:
        if ref.name in by_name:
            raise InvalidInput(
                f"model {ref.name!r} is given twice ({by_name[ref.name]} and {ref}): serve it once"
            )
        by_name[ref.name] = ref
    if not by_name:
        raise InvalidInput("name at least one model to serve, e.g. fraud@champion")
    return by_name


def describe(served: ServedModel) -> dict[str, Any]:
    """What `/v2/models/{m}` and `/version` say about a served version."""
    return {
        "name": served.name,
        "version": served.number,
        "ref": served.ref,
        "runtime": served.predictor.runtime,
        "content_hash": served.version.content_hash,
    }
