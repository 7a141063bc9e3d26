"""Promotion and comparison of versions: evaluation rows, both models scored on them, gates, the alias move.

Separate from `promotion` (scoring and gate verdicts, pure) because this module does the I/O: it reads
datasets and packages, writes the alias and its audit event, and announces the outcome to webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.core.errors import InvalidInput
from loopml.registry.config import gate_policy
from loopml.registry.gates import GatePolicy, GateResult, Scores
from loopml.registry.loading import columns_of, load_version, manifest_of, training_rows_of
from loopml.registry.promotion import (
    EvaluationData,
    Promotion,
    PromotionRefused,
    check_disjoint,
    decide,
    primary,
    score,
)
from loopml.registry.records import ModelVersion
from loopml.registry.store import RegistryStore
from loopml.registry.webhooks import alias_payload, announce

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker


def current_user() -> str | None:
    """Who is acting (recorded in the audit trail)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def promote(
    tracker: Tracker,
    name: str,
    version: int,
    *,
    alias: str = "champion",
    policy: GatePolicy | None = None,
    dataset: str | None = None,
    X: Any = None,
    y: Any = None,
    target: str | None = None,
    force: bool = False,
    reason: str | None = None,
    user: str | None = None,
) -> Promotion:
    """Move `alias` to `version` if it passes the gates; else record the refusal and raise `PromotionRefused`.

    Both models are scored on the same held-out rows: `dataset` (a dataset version holding `target`), or
    `X` and `y`, else the held-out dataset version in the challenger's manifest. With no policy, the gate is
    "not worse than the current holder on the primary metric". `force=True` (with a `reason`) skips the
    gates and is recorded as forced. `user` is who acts (default: this process's user).
    """
    opened = tracker
    store = RegistryStore(tracker.stores.db)
    challenger = store.get_version(f"{name}@v{version}")
    holder_version = store.get_model(name).aliases.get(alias)
    if holder_version == version:
        raise InvalidInput(f"{name}@{alias} is already v{version}")
    user = user or current_user()
    if force:
        if not reason:
            raise InvalidInput("a forced promotion needs a reason (it is kept in the alias history)")
        event = store.move_alias(
            name,
            alias,
            version,
            forced=True,
            reason=reason,
            user=user,
            check_from=True,
            expected_from=holder_version,
        )
        announce(opened.settings.project_dir, "alias_moved", alias_payload(event))
        return Promotion(event, [], None)
    check = check_gates(
        opened,
        challenger,
        alias=alias,
        holder_version=holder_version,
        policy=policy,
        dataset=dataset,
        X=X,
        y=y,
        target=target,
    )
    if not check.passed:
        refusal = store.record_refusal(
            name, alias, version, reason=reason or "gates failed", gates=check.evidence, user=user
        )
        announce(opened.settings.project_dir, "promotion_refused", alias_payload(refusal))
        raise PromotionRefused(check.refusal(challenger.ref, alias), gates=check.gates)
    event = store.move_alias(
        name,
        alias,
        version,
        reason=reason or "gates passed",
        gates=check.evidence,
        user=user,
        check_from=True,
        expected_from=holder_version,
    )
    announce(opened.settings.project_dir, "alias_moved", alias_payload(event))
    return Promotion(event, check.gates, check.source)


@dataclass(frozen=True)
class GateCheck:
    """The gates' verdicts on a challenger, with the evidence kept in the audit trail."""

    gates: list[GateResult]
    evidence: list[dict[str, Any]]
    holder_version: int | None
    source: str | None  # where the evaluation rows came from

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(g.passed for g in self.gates)

    def refusal(self, ref: str, alias: str) -> str:
        """One line saying which gates failed and why."""
        lines = "; ".join(f"{g.gate}: {g.detail}" for g in self.gates if not g.passed)
        return f"{ref} was not promoted to {alias}: {lines}"


def check_gates(
    tracker: Tracker,
    challenger: ModelVersion,
    *,
    alias: str,
    holder_version: int | None,
    policy: GatePolicy | None = None,
    dataset: str | None = None,
    X: Any = None,
    y: Any = None,
    target: str | None = None,
) -> GateCheck:
    """Score `challenger` and the alias's holder on the same evaluation rows and judge the gates; moves
    nothing (`promote` and the automation controller decide what to write)."""
    store = RegistryStore(tracker.stores.db)
    name = challenger.name
    policy = policy or gate_policy(tracker.settings.project_dir, name, alias) or GatePolicy()
    evaluation = evaluation_data(tracker, challenger, dataset=dataset, X=X, y=y, target=target)
    challenger_scores = holder_scores = None
    metric = policy.metric or "primary"
    if evaluation is not None:
        challenger_model = load_version(tracker, challenger, serving=True)
        metric = policy.metric or primary(challenger_model)
        columns = columns_of(challenger)
        trained = {challenger.ref: training_rows_of(tracker, challenger)}
        holder = store.get_version(f"{name}@v{holder_version}") if holder_version is not None else None
        if holder is not None:
            trained[holder.ref] = training_rows_of(tracker, holder)
        check_disjoint(evaluation, columns, trained)
        challenger_scores = score(challenger_model, evaluation, columns, policy.slice_by)
        if holder is not None:
            holder_scores = score(
                load_version(tracker, holder, serving=True), evaluation, columns_of(holder), policy.slice_by
            )
    gates = decide(
        policy,
        challenger=challenger,
        metric=metric,
        challenger_scores=challenger_scores,
        holder_scores=holder_scores,
        holder_version=holder_version,
    )
    evidence = [g.to_dict() for g in gates] + [
        {"policy": policy.to_dict(), "evaluation": evaluation.source if evaluation else None}
    ]
    return GateCheck(gates, evidence, holder_version, evaluation.source if evaluation else None)


def compare(
    tracker: Tracker,
    name: str,
    *refs: str,
    dataset: str | None = None,
    X: Any = None,
    y: Any = None,
    target: str | None = None,
    slice_by: str | None = None,
) -> dict[str, Scores]:
    """Score versions or aliases of `name` (e.g. "champion", "challenger", "v3") on the same held-out rows.

    The rows are `dataset`, or `X` and `y`, else the held-out dataset of the first version's manifest; rows
    any of the models was trained on are refused.
    """
    opened = tracker
    store = RegistryStore(tracker.stores.db)
    if len(refs) < 2:
        raise InvalidInput(
            "compare needs at least two versions or aliases, e.g. compare('fraud', 'champion', 'v3')"
        )
    versions = [store.get_version(f"{name}@{r}") for r in refs]
    evaluation = evaluation_data(opened, versions[0], dataset=dataset, X=X, y=y, target=target)
    if evaluation is None:
        raise InvalidInput(f"no evaluation data to compare {name} versions: pass dataset=NAME@vN, or X and y")
    for version in versions:
        check_disjoint(evaluation, columns_of(version), {version.ref: training_rows_of(opened, version)})
    return {
        ref: score(load_version(opened, version, serving=True), evaluation, columns_of(version), slice_by)
        for ref, version in zip(refs, versions, strict=True)
    }


def evaluation_data(
    tracker: Tracker, challenger: ModelVersion, *, dataset: str | None, X: Any, y: Any, target: str | None
) -> EvaluationData | None:
    """The rows the gates score on: X and y, else `dataset`, else the held-out dataset in the manifest."""
    if X is not None or y is not None:
        if X is None or y is None:
            raise InvalidInput("pass both X and y (features and their labels), or a dataset")
        frame = X.copy() if hasattr(X, "copy") else X
        label = target or "__target__"
        frame[label] = list(y)
        return EvaluationData(frame, label, f"given X, y ({len(frame)} rows)")
    lineage = manifest_of(tracker, challenger).get("lineage") or {}
    source = dataset or lineage.get("eval_dataset")
    if source is None:
        return None
    named: str | None = target or lineage.get("eval_target")
    if named is None:
        raise InvalidInput(f"name the target column of {source} (target=..., CLI: --target)")
    label = named
    from loopml.datasets import load as load_dataset

    frame = load_dataset(source, context="evaluation", tracker=tracker)
    if label not in frame.columns:
        raise InvalidInput(
            f"dataset {source} has no target column {label!r}; its columns: {', '.join(frame.columns)}"
        )
    return EvaluationData(frame, label, f"dataset {source}")
