"""The models a server answers with: each version loaded once, routed as the model's deployment says.

A served name (`fraud`, from `loopml serve fraud@champion`) follows a `Route`: its champion and, when the
model has a canary or shadow deployment (`loopml deploy set`), its challenger. Without a deployment the
champion is the reference given on the command line. Deployments and aliases are looked up again every
`poll_s` seconds and on `refresh()`. When either points elsewhere, the new version is loaded and warmed on its
input example while the old route keeps answering; then one reference assignment switches traffic. A request
holds the `ServedModel` it started with, so in-flight requests finish on the old version. A version that fails
to load leaves the old route serving and is reported in `last_error`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.registry.deployments import Deployment, DeploymentStore
from loopml.registry.loading import forget_loaded, load_version, package_folder
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


@dataclass(frozen=True)
class Route:
    """Who answers for one served name: the champion, and the challenger of a canary or shadow deployment."""

    champion: ServedModel
    challenger: ServedModel | None
    deployment: Deployment

    @property
    def roles(self) -> dict[int, str]:
        """Version number -> "champion" / "challenger"."""
        roles = {self.champion.number: "champion"}
        if self.challenger is not None:
            roles[self.challenger.number] = "challenger"
        return roles


class ModelPool:
    """Served models by name, reloaded when their alias or deployment changes."""

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
        self.deployments = DeploymentStore(tracker.stores.db)
        self.last_error: dict[str, str] = {}
        self._routes: dict[str, Route] = {}
        self._loaded: dict[str, ServedModel] = {}  # version id -> loaded version, reused across routes
        self._lock = threading.Lock()  # serialises loads and switches; reads of `_routes` need none
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        """Load every served model (errors propagate: a server must not start without its models), then poll."""
        for name in self.refs:
            self._switch(name, self._desired(name))
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
        return all(name in self._routes for name in self.refs)

    def route(self, name: str) -> Route:
        """Who answers for `name` now."""
        route = self._routes.get(name)
        if route is None:
            known = ", ".join(self.refs) or "none"
            raise NotFound(f"model {name!r} is not served here (served: {known})")
        return route

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The champion serving `name` now, or version `version` of it (loaded on first use)."""
        route = self.route(name)
        if version is None or version == route.champion.number:
            return route.champion
        if route.challenger is not None and version == route.challenger.number:
            return route.challenger
        found = self.store.get_version(ModelRef(name, version=version))
        with self._lock:
            return self._load(found)

    def refresh(self) -> list[tuple[str, int, int]]:
        """Follow every deployment and alias now; returns the champion switches as (name, from, to)."""
        switched = []
        for name in self.refs:
            current = self._routes.get(name)
            try:
                wanted = self._desired(name)
            except LoopMLError as error:  # an alias removed or a store hiccup: keep serving what is loaded
                self._note(name, f"cannot resolve the versions of {name}: {error}")
                continue
            if current is not None and _same(current, wanted):
                continue
            try:
                route = self._switch(name, wanted)
            except Exception as error:  # a broken package must not take down the route that works
                failed = ", ".join(v.ref for v in (wanted[0], wanted[1]) if v is not None)
                self._note(name, f"cannot load {failed}: {error}")
                continue
            self.last_error.pop(name, None)
            if current is None or current.champion.number != route.champion.number:
                switched.append((name, current.champion.number if current else 0, route.champion.number))
        return switched

    def _desired(self, name: str) -> tuple[ModelVersion, ModelVersion | None, Deployment]:
        """The versions the deployment (or the command-line reference) asks for now."""
        deployment = self.deployments.get(name)
        if deployment is None:
            ref = self.refs[name]
            champion_ref = ref.alias or (f"v{ref.version}" if ref.version else None)
            deployment = Deployment(model=name, champion=champion_ref or "latest")
            return self.store.get_version(ref), None, deployment
        champion = self.store.get_version(f"{name}@{deployment.champion}")
        challenger = None
        if deployment.mode != "single" and deployment.challenger is not None:
            challenger = self.store.get_version(f"{name}@{deployment.challenger}")
        return champion, challenger, deployment

    def _switch(self, name: str, wanted: tuple[ModelVersion, ModelVersion | None, Deployment]) -> Route:
        champion, challenger, deployment = wanted
        with self._lock:
            route = Route(
                self._load(champion, str(self.refs[name])),
                self._load(challenger) if challenger is not None else None,
                deployment,
            )
            old = self._routes.get(name)
            self._routes[name] = route  # one assignment: requests see the old route or the new, never half
            self._evict()
        if old is not None and old.champion.number != route.champion.number:
            log.info("serving %s: v%d -> v%d", name, old.champion.number, route.champion.number)
        return route

    def _load(self, version: ModelVersion, ref: str | None = None) -> ServedModel:
        loaded = self._loaded.get(version.version_id)
        if loaded is None:
            model = load_version(self.tracker, version, serving=True)
            signature = Signature.from_dict(version.signature) if version.signature else None
            predictor = Predictor(model, signature, self.policy)
            self._warm(predictor, version)
            loaded = ServedModel(version.name, version.ref, version, predictor, time.time())
            self._loaded[version.version_id] = loaded
        return replace(loaded, ref=ref) if ref is not None and ref != loaded.ref else loaded

    def _evict(self) -> None:
        """Forget versions no route serves (in-flight requests keep theirs alive until they finish)."""
        live = {
            served.version.version_id
            for route in self._routes.values()
            for served in (route.champion, route.challenger)
            if served is not None
        }
        for version_id in [v for v in self._loaded if v not in live]:
            forget_loaded(self._loaded.pop(version_id).version)

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


def _same(route: Route, wanted: tuple[ModelVersion, ModelVersion | None, Deployment]) -> bool:
    champion, challenger, deployment = wanted
    current_challenger = route.challenger.version.version_id if route.challenger else None
    return (
        route.champion.version.version_id == champion.version_id
        and current_challenger == (challenger.version_id if challenger else None)
        and route.deployment == deployment
    )


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
