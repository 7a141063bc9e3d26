"""Models: the registry's pages. The registered models (latest version, aliases, owner, how each is served),
one model's versions with its alias history (every move and every refused promotion, who, when, why and the
gates' verdicts) and its metrics across versions, and one version's page: signature, package facts, the ONNX
copy, whether loading runs code, and its lineage from dataset versions through its run to the aliases and the
deployment that point at it.

A reader may hold a role on one model only: every model page checks the role on that model, and the list
shows only the models the caller may read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from loopml.core.errors import InvalidInput, LoopMLError, NotFound
from loopml.registry.deployments import Deployment, DeploymentStore
from loopml.registry.flavor import flavor_named
from loopml.registry.loading import manifest_of
from loopml.registry.package import ONNX_COPY
from loopml.registry.records import AliasEvent, ModelRef, ModelVersion, RegisteredModel
from loopml.registry.signature import Signature
from loopml.registry.store import RegistryStore
from loopml.server.fields import Caller, who
from loopml.server.ui import charts
from loopml.server.ui.pages import Pages, caller, link

if TYPE_CHECKING:
    from loopml.tracking.records import Run
    from loopml.tracking.tracker import Tracker

KEY_METRICS = 6  # metric columns in the versions table: those most versions have
MAX_METRIC_CHARTS = 12
MAX_EVENTS = 500  # newest alias events shown on a model's page
MAX_LEVELS = 12  # of a category column, listed in the signature
_NUMBER = re.compile(r"v?(\d+)")


def routes(app: FastAPI, pages: Pages) -> None:
    tracker = pages.tracker
    registry = RegistryStore(tracker.stores.db)
    deployments = DeploymentStore(tracker.stores.db)

    @app.get("/models", response_class=HTMLResponse)
    def model_list(request: Request) -> HTMLResponse:
        viewer = who(request)
        models = [m for m in registry.list_models() if viewer.can("read", m.name)]
        if not models and not viewer.can("read"):
            viewer.require("read")  # no role anywhere: say so rather than show an empty registry
        rows = [(m, _serving(m, deployments.get(m.name))) for m in models]
        return pages.render(request, "models.html", section="models", rows=rows, **_urls(request))

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str) -> HTMLResponse:
        caller(request, "read", model=name)
        model = registry.get_model(name)
        versions = registry.list_versions(name)
        keys = metric_keys(versions)
        events = registry.history(name)
        return pages.render(
            request,
            "model.html",
            section="models",
            model=model,
            versions=versions,
            metrics=keys[:KEY_METRICS],
            specs=metric_charts(versions, keys[:MAX_METRIC_CHARTS]),
            uncharted=keys[MAX_METRIC_CHARTS:],
            events=[audit(e) for e in reversed(events[-MAX_EVENTS:])],
            older=max(0, len(events) - MAX_EVENTS),
            serving=_serving(model, deployments.get(name)),
            **_urls(request),
        )

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    def version_page(request: Request, name: str, version: str) -> HTMLResponse:
        viewer = caller(request, "read", model=name)
        found = registry.get_version(version_ref(name, version))
        model = registry.get_model(name)
        manifest, problem = _manifest(tracker, found)
        recorded = manifest.get("lineage")
        lineage: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        run = _run(tracker, viewer, found.run_id)
        serving = _serving(model, deployments.get(name))
        here = [side for side in (serving.sides if serving else []) if side.version == found.version]
        signature, signature_problem = _signature(found)
        return pages.render(
            request,
            "model_version.html",
            section="models",
            model=model,
            version=found,
            manifest=manifest,
            problem=problem,
            run=run,
            commit=lineage.get("git_commit") or (run.git.commit if run else None),
            signature=signature,
            signature_problem=signature_problem,
            max_levels=MAX_LEVELS,
            onnx=onnx_state(manifest),
            runs_code=_runs_code(found.flavor),
            serving=serving,
            here=here,
            dag=lineage_graph(request, found, lineage, run, here),
            events=involving(registry.history(name), found.version),
            **_urls(request),
        )


# -- addressing ---------------------------------------------------------------------------------------


def version_ref(name: str, version: str) -> str:
    """The registry reference a version page's path names: `v3` or `3` (a version), or an alias (`champion`,
    `latest`); `InvalidInput` for anything else."""
    number = _NUMBER.fullmatch(version)
    parsed = ModelRef.parse(f"{name}@v{number.group(1)}" if number else f"{name}@{version}")
    if parsed.name != name:  # parsing trims spaces: the role was checked on the name as given
        raise InvalidInput(f"not a model name: {name!r}")
    if number and parsed.version is None:  # too many digits reads as an alias, which no alias can be
        raise InvalidInput(f"not a version number: {version[:40]!r}")
    return str(parsed)


def model_path(name: str, *rest: str) -> str:
    """A model page's path with the name quoted (a model name may hold `?`, `#` or `%`)."""
    return "/".join(["/models", quote(name, safe=""), *rest])


def _urls(request: Request) -> dict[str, Any]:
    """Link makers for the templates, so every model name in a link is quoted the same way."""
    return {
        "model_url": lambda name, *rest: link(request, model_path(name, *rest)),
        "version_url": lambda name, number: link(request, model_path(name, f"v{number}")),
        "deployment_url": lambda name: link(request, f"/deployments/{quote(name, safe='')}"),
    }


# -- serving ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a deployment: champion or challenger, the reference it names, the version that is today."""

    role: str
    ref: str
    version: int | None
    share: float  # of requests it answers (in shadow mode, the challenger's share is mirrored, not answered)

    @property
    def summary(self) -> str:
        """E.g. `champion → v3 (90%)`, or `challenger (v4) → v4 (10%)` when it names a version."""
        named = self.role if self.ref == self.role else f"{self.role} ({self.ref})"
        target = f"v{self.version}" if self.version is not None else "unset"
        return f"{named} → {target} ({self.share:.0%})"


@dataclass(frozen=True)
class Serving:
    """A model's deployment with each side resolved to the version its alias points at now."""

    deployment: Deployment
    sides: list[Side]

    @property
    def summary(self) -> str:
        """E.g. `canary: champion → v3 (90%), challenger → v4 (10%)`."""
        return f"{self.deployment.mode}: " + ", ".join(side.summary for side in self.sides)


def _serving(model: RegisteredModel, deployment: Deployment | None) -> Serving | None:
    if deployment is None:
        return None
    challenger_share = deployment.share if deployment.mode != "single" else 0.0
    champion_share = 1.0 - challenger_share if deployment.mode == "canary" else 1.0
    sides = [Side("champion", deployment.champion, _resolve(model, deployment.champion), champion_share)]
    if deployment.challenger is not None:
        side = Side(
            "challenger", deployment.challenger, _resolve(model, deployment.challenger), challenger_share
        )
        sides.append(side)
    return Serving(deployment, sides)


def _resolve(model: RegisteredModel, ref: str) -> int | None:
    """The version a deployment's `ref` (an alias or vN) names now; None when the alias is not set."""
    try:
        parsed = ModelRef.parse(f"{model.name}@{ref}")
    except LoopMLError:
        return None
    if parsed.version is not None:
        return parsed.version
    return model.aliases.get(parsed.alias) if parsed.alias else model.latest_version


# -- the audit trail ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One gate's verdict as the audit trail recorded it."""

    gate: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Audit:
    """An alias event with its evidence split out: each gate's verdict, the rows scored, the policy."""

    event: AliasEvent
    verdicts: list[Verdict]
    evaluation: str | None
    policy: str


def audit(event: AliasEvent) -> Audit:
    """The event's evidence, read defensively: the trail is JSON written by every LoopML version since."""
    # The verdicts come first, then one entry holding the policy and where the evaluation rows came from.
    verdicts: list[Verdict] = []
    evaluation: str | None = None
    policy = ""
    for entry in event.gates or []:
        if not isinstance(entry, dict):
            continue
        if "gate" in entry:
            verdicts.append(
                Verdict(str(entry["gate"]), entry.get("passed") is True, str(entry.get("detail") or ""))
            )
        elif "policy" in entry:
            evaluation = entry.get("evaluation")
            policy = policy_text(entry.get("policy"))
    return Audit(event, verdicts, str(evaluation) if evaluation else None, policy)


def policy_text(policy: Any) -> str:
    """A gate policy in one line, its defaults left out."""
    if not isinstance(policy, dict):
        return ""
    shown = [f"{k}={v}" for k, v in sorted(policy.items()) if v not in (None, "", 0, [], {})]
    return ", ".join(shown) or "default (not worse than the holder on the primary metric)"


def involving(events: list[AliasEvent], version: int) -> list[tuple[str, Audit]]:
    """The alias events that moved an alias to or from `version` or refused it, newest first, each with the
    version's part in it (challenger, or the holder it was measured against)."""
    found = []
    for event in reversed(events):
        if event.to_version == version:
            found.append(("challenger", audit(event)))
        elif event.from_version == version:
            found.append(("holder", audit(event)))
    return found[:MAX_EVENTS]


# -- metrics ------------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metric_keys(versions: list[ModelVersion]) -> list[str]:
    """Numeric metric names, those most versions have first."""
    counts = Counter(k for v in versions for k, value in v.metrics.items() if _number(value))
    return [k for k, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def metric_charts(versions: list[ModelVersion], keys: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """One chart per metric over version numbers (a version without the metric is a gap)."""
    ordered = sorted(versions, key=lambda v: v.version)
    numbers = [float(v.version) for v in ordered]
    specs = []
    for key in keys:
        values = [float(v.metrics[key]) if _number(v.metrics.get(key)) else None for v in ordered]
        specs.append((key, charts.xy(numbers, [(key, values)], x_label="version", y_label=key, whole_x=True)))
    return specs


# -- one version --------------------------------------------------------------------------------------


def _manifest(tracker: Tracker, version: ModelVersion) -> tuple[dict[str, Any], str]:
    """The version's manifest, or an empty one and why it could not be read (the page still shows what the
    database holds: a missing or damaged package must not hide the record)."""
    try:
        return manifest_of(tracker, version), ""
    except (LoopMLError, ValueError, OSError) as error:
        message = getattr(error, "message", None) or str(error)
        return {}, f"the model package could not be read: {message}"


def _signature(version: ModelVersion) -> tuple[Signature | None, str]:
    if not version.signature:
        return None, ""
    try:
        return Signature.from_dict(version.signature), ""
    except LoopMLError as error:
        return None, f"the stored signature is malformed: {error.message}"


def _run(tracker: Tracker, viewer: Caller, run_id: str | None) -> Run | None:
    """The version's run, for a caller who may read the workspace's runs (a reader of this model only sees
    the run's id and commit as the model's own manifest records them)."""
    if run_id is None or not viewer.can("read"):
        return None
    try:
        run: Run = tracker.store.get_run(run_id)
    except NotFound:  # deleted since: the manifest still names it
        return None
    return run


def _runs_code(flavor: str) -> bool | None:
    """Whether loading the flavor runs the model's own code (None: a flavor this LoopML does not know)."""
    try:
        return flavor_named(flavor).runs_code
    except NotFound:
        return None


def onnx_state(manifest: dict[str, Any]) -> tuple[str, str]:
    """(state, explanation) of the version's ONNX copy: `verified`, `discarded` (converted but its predictions
    differed, or conversion failed), `none` (not tried), `present` (stored without a check record) or
    `unknown` (the package could not be read)."""
    outcome = manifest.get("onnx")
    stored = ONNX_COPY in (manifest.get("files") or [])
    if isinstance(outcome, dict):
        reason = str(outcome.get("reason") or "")
        if outcome.get("kept") and stored:
            return "verified", reason
        return "discarded", reason
    if stored:
        return "present", "an ONNX copy is stored, with no record of its check"
    if not manifest:
        return "unknown", "the package could not be read"
    return "none", "no conversion was tried (only scikit-learn models registered with a sample get one)"


class _Dag:
    """Nodes and their upstream keys, in the order added (the order `charts.graph` keeps in a column)."""

    def __init__(self) -> None:
        self.upstream: dict[str, list[str]] = {}
        self.nodes: dict[str, charts.Node] = {}

    def add(self, node: charts.Node, *parents: str) -> str:
        self.upstream.setdefault(node.key, []).extend(parents)
        self.nodes.setdefault(node.key, node)
        return node.key


def lineage_graph(
    request: Request,
    version: ModelVersion,
    lineage: dict[str, Any],
    run: Run | None,
    here: list[Side],
) -> charts.Graph:
    """Dataset versions -> (pipeline run) -> run -> this version -> its aliases -> the deployment."""
    dag = _Dag()
    sources = _sources(dag, request, version, lineage, run)
    path = model_path(version.name, f"v{version.version}")
    this = dag.add(
        charts.Node(
            f"version:v{version.version}", version.ref, href=link(request, path), note=version.flavor
        ),
        *sources,
    )
    model_page = link(request, model_path(version.name))
    for alias in version.aliases:
        dag.add(charts.Node(f"alias:{alias}", f"@{alias}", href=model_page, note="alias"), this)
    serving_page = link(request, f"/deployments/{quote(version.name, safe='')}")
    for side in here:
        # A deployment names an alias (or a version): the arrow comes from what it names.
        parent = f"alias:{side.ref}" if f"alias:{side.ref}" in dag.nodes else this
        node = charts.Node(
            f"deployment:{side.role}",
            f"serving: {side.role}",
            href=serving_page,
            note=f"{side.share:.0%} of requests",
        )
        dag.add(node, parent)
    return charts.graph(dag.upstream, dag.nodes)


def _sources(
    dag: _Dag, request: Request, version: ModelVersion, lineage: dict[str, Any], run: Run | None
) -> list[str]:
    """Add what the version was made from (dataset versions, its run and pipeline run) and the held-out rows
    its promotions score on; the keys of the nodes with an arrow into the version."""
    inputs = [
        dag.add(_dataset_node(request, d, "input"))
        for d in lineage.get("datasets") or []
        if isinstance(d, dict)
    ]
    above = list(inputs)
    run_id = lineage.get("run_id") or version.run_id
    if run_id:
        parents = list(inputs)
        pipeline = lineage.get("pipeline_run_id")
        if pipeline:  # a pipeline step: the pipeline run holds the step runs
            node = charts.Node(
                f"pipeline:{pipeline}",
                "pipeline run",
                href=link(request, f"/runs/{pipeline}"),
                note=str(pipeline)[:12],
            )
            parents.append(dag.add(node))
        above = [dag.add(_run_node(request, str(run_id), run, lineage.get("git_commit")), *parents)]
    evaluation = lineage.get("eval_dataset")
    if isinstance(evaluation, str) and evaluation:
        name, _, number = evaluation.partition("@")
        held_out = _dataset_node(request, {"name": name, "version": number}, "held out (gates)")
        node = charts.Node("eval:" + held_out.key, held_out.label, href=held_out.href, note=held_out.note)
        above.append(dag.add(node))
    return above


def _dataset_node(request: Request, entry: dict[str, Any], note: str) -> charts.Node:
    name, number = str(entry.get("name") or "?"), str(entry.get("version") or "")
    label = f"{name}@{number}" if number else name
    path = f"/datasets/{quote(name, safe='')}" + (f"/{quote(number, safe='')}" if number else "")
    return charts.Node(f"dataset:{label}", label, href=link(request, path), note=note)


def _run_node(request: Request, run_id: str, run: Run | None, commit: Any) -> charts.Node:
    commit = commit or (run.git.commit if run else None)
    note = f"commit {str(commit)[:10]}" if commit else "no commit recorded"
    return charts.Node(
        f"run:{run_id}",
        run.name if run else f"run {run_id[:8]}",
        status=run.status.value if run else "",
        href=link(request, f"/runs/{run_id}"),
        note=note,
    )
