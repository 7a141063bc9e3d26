"""The model registry against a team server: `RegistryStore`'s methods, promotion and deployments over HTTP.

`loopml.models` uses `RemoteRegistry` in place of `RegistryStore` when `LOOPML_TRACKING_URI` points at a server.
Packages are built on the client and their blobs uploaded (content-addressed, so a retry or a second client
uploading the same model costs nothing); the server reads flavor, signature and metrics from the uploaded
manifest and records the caller as the version's author. Promotion runs on the server, where the gates read the
held-out data; a refusal comes back as `PromotionRefused` with the gates' verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from loopml.core.errors import InvalidInput, NotFound
from loopml.registry.deployments import Deployment, DeploymentEvent
from loopml.registry.gates import GatePolicy, GateResult, Scores
from loopml.registry.promotion import Promotion, PromotionRefused
from loopml.registry.records import AliasEvent, ModelRef, ModelVersion, Registered, RegisteredModel
from loopml.tracking.remote import Http


class RemoteRegistry:
    """Registered models, versions, aliases and deployments of a team server."""

    def __init__(self, http: Http) -> None:
        self.http = http

    # -- versions ---------------------------------------------------------------------------------------------

    def add_version(
        self,
        name: str,
        *,
        content_hash: str,
        package_digest: str,
        run_id: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        **_: Any,  # flavor, signature, metrics: the server reads them from the uploaded manifest
    ) -> Registered:
        body = {
            "content_hash": content_hash,
            "package_digest": package_digest,
            "run_id": run_id,
            "description": description,
            "tags": dict(tags or {}),
        }
        # Repeatable: the same content gives the same version however often it is sent.
        found = self.http.call("POST", f"/models/{_part(name)}/versions", body, repeatable=True)
        return Registered(_version(found["version"]), bool(found["created"]))

    def find_version(self, name: str, content_hash: str) -> ModelVersion | None:
        try:
            found = self.http.call(
                "GET", f"/models/{_part(name)}/versions/by-content/{_part(content_hash)}", repeatable=True
            )
        except NotFound:
            return None
        return _version(found)

    def get_version(self, ref: ModelRef | str) -> ModelVersion:
        return _version(self.http.call("GET", f"/model-versions/{_part(str(ref))}", repeatable=True))

    def list_versions(self, name: str) -> list[ModelVersion]:
        found = self.http.call("GET", f"/models/{_part(name)}/versions", repeatable=True)
        return [_version(v) for v in found["versions"]]

    def set_version_tags(self, ref: ModelRef | str, tags: Mapping[str, str]) -> None:
        self.http.call(
            "PUT", f"/model-versions/{_part(str(ref))}/tags", {"tags": dict(tags)}, repeatable=True
        )

    def mark_trusted(self, ref: ModelRef | str, user: str | None) -> ModelVersion:
        # The server records its authenticated caller, not `user`.
        return _version(
            self.http.call("POST", f"/model-versions/{_part(str(ref))}/trust", {}, repeatable=True)
        )

    # -- models -----------------------------------------------------------------------------------------------

    def get_model(self, name: str) -> RegisteredModel:
        return _model(self.http.call("GET", f"/models/{_part(name)}", repeatable=True))

    def list_models(self) -> list[RegisteredModel]:
        return [_model(m) for m in self.http.call("GET", "/models", repeatable=True)["models"]]

    def update_model(self, name: str, *, description: str | None = None, owner: str | None = None) -> None:
        body = {"description": description, "owner": owner}
        self.http.call("PATCH", f"/models/{_part(name)}", body, repeatable=True)

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        self.http.call("PATCH", f"/models/{_part(name)}", {"tags": dict(tags)}, repeatable=True)

    # -- aliases, promotion, audit ----------------------------------------------------------------------------

    def move_alias(
        self, name: str, alias: str, version: int | None, *, reason: str | None = None, **_: Any
    ) -> AliasEvent:
        """A forced move (or removal) recorded with the token's user; the gates are `promote`'s."""
        path = f"/models/{_part(name)}/aliases/{_part(alias)}"
        if version is None:
            query = f"?reason={quote(reason)}" if reason else ""
            return _event(self.http.call("DELETE", path + query, repeatable=False))
        return _event(self.http.call("PUT", path, {"version": version, "reason": reason}, repeatable=False))

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        query = f"?alias={quote(alias)}" if alias else ""
        found = self.http.call("GET", f"/models/{_part(name)}/history{query}", repeatable=True)
        return [_event(e) for e in found["events"]]

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str,
        policy: GatePolicy | None,
        X: Any,
        y: Any,
        dataset: str | None,
        target: str | None,
        force: bool,
        reason: str | None,
    ) -> Promotion:
        body = {
            **_rows(X, y),
            "version": version,
            "alias": alias,
            "policy": None if policy is None else policy.to_dict(),
            "dataset": dataset,
            "target": target,
            "force": force,
            "reason": reason,
        }
        status, found = self.http.exchange("POST", f"/models/{_part(name)}/promote", body)
        if status == 409 and isinstance(found, dict) and found.get("code") == PromotionRefused.code:
            raise PromotionRefused(
                str(found.get("error")), gates=[_gate(g) for g in found.get("gates") or []]
            )
        if status >= 400:
            self.http.raise_for(status, found)
        return Promotion(_event(found["event"]), [_gate(g) for g in found["gates"]], found.get("evaluation"))

    def compare(
        self,
        name: str,
        refs: tuple[str, ...],
        *,
        X: Any,
        y: Any,
        dataset: str | None,
        target: str | None,
        slice_by: str | None,
    ) -> dict[str, Scores]:
        body = {**_rows(X, y), "refs": list(refs), "dataset": dataset, "target": target, "slice_by": slice_by}
        found = self.http.call("POST", f"/models/{_part(name)}/compare", body, repeatable=True)
        return {ref: _scores(s) for ref, s in found["scores"].items()}

    # -- deployments ------------------------------------------------------------------------------------------

    def deployment(self, name: str) -> Deployment | None:
        found = self.http.call("GET", f"/models/{_part(name)}/deployment", repeatable=True)["deployment"]
        return None if found is None else Deployment(**found)

    def deploy(self, wanted: Deployment, *, reason: str | None) -> Deployment:
        body = {
            "champion": wanted.champion,
            "challenger": wanted.challenger,
            "mode": wanted.mode,
            "share": wanted.share,
            "sticky_key": wanted.sticky_key,
            "limits": dict(wanted.limits),
            "reason": reason,
        }
        return Deployment(
            **self.http.call("PUT", f"/models/{_part(wanted.model)}/deployment", body, repeatable=False)
        )

    def deployment_events(self, name: str) -> list[DeploymentEvent]:
        found = self.http.call("GET", f"/models/{_part(name)}/deployment/events", repeatable=True)["events"]
        return [DeploymentEvent(**e) for e in found]


def _rows(X: Any, y: Any) -> dict[str, Any]:
    """Evaluation rows sent with the request (`rows` in pandas' split form, `labels`): for small held-out
    sets (the request is at most 1 MB); larger ones belong in a dataset version the server holds."""
    if X is None and y is None:
        return {}
    if X is None or y is None:
        raise InvalidInput("give both X and y (or a dataset and its target)")
    import json

    import pandas as pd

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    # Python's own float text round-trips exactly (pandas' to_json keeps 10 digits by default, which would
    # hide training rows from the overlap check); missing values become null.
    data = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    plain = json.loads(json.dumps({"data": data, "labels": pd.Series(y).tolist()}, default=_scalar))
    return {
        "rows": {"columns": [str(c) for c in frame.columns], "data": plain["data"]},
        "labels": plain["labels"],
    }


def _scalar(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def _part(text: str) -> str:
    """One path segment: `/` and everything else URL-special encoded (names are data, not paths)."""
    return quote(text, safe="@")


def _version(data: dict[str, Any]) -> ModelVersion:
    return ModelVersion(**{**data, "aliases": tuple(data.get("aliases") or ())})


def _model(data: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel(**data)


def _event(data: dict[str, Any]) -> AliasEvent:
    return AliasEvent(**data)


def _gate(data: dict[str, Any]) -> GateResult:
    return GateResult(data["gate"], bool(data["passed"]), str(data["detail"]))


def _scores(data: dict[str, Any]) -> Scores:
    def numbers(values: Mapping[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in values.items()}

    return Scores(
        metrics=numbers(data["metrics"]),
        per_slice={k: numbers(v) for k, v in (data.get("per_slice") or {}).items()},
        latency_ms_per_row=data.get("latency_ms_per_row"),
    )
