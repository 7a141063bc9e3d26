"""Rolling a challenger that passed the gates out: directly, or through a canary or shadow deployment that the
controller watches tick by tick until it promotes it or rolls it back.

Every change is a guarded write (see `loopml.automation.store`): the alias move or deployment change and the
loop's next state commit together. The order makes each crash point safe to resume from:
start    challenger alias → deployment (state: rollout)
promote  champion alias (state: promoting) → deployment back to single + challenger alias removed (idle)
rollback deployment back to single (idle) → challenger alias removed
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loopml.automation.canary import evidence, judge
from loopml.core.errors import Conflict, LoopMLError, NotFound
from loopml.registry.deployments import Deployment, DeploymentStore
from loopml.registry.store import RegistryStore

if TYPE_CHECKING:
    from loopml.automation.controller import Outcome, Step

CHALLENGER = "challenger"


def start(step: Step, gates: list[dict[str, Any]], champion: int | None) -> Outcome:
    """The gates passed: promote now (direct, or no champion yet) or open a canary / shadow deployment."""
    from loopml.automation.controller import Outcome

    rollout = step.policy.rollout
    candidate = step.state.candidate or 0
    registry = RegistryStore(step.tracker.stores.db)
    if rollout.strategy == "direct" or champion is None:
        return _promote(
            step, gates, champion, why=_passed(gates) + (" (first champion)" if champion is None else "")
        )
    deployments = DeploymentStore(step.tracker.stores.db)
    current = deployments.get(step.model)
    if registry.get_model(step.model).aliases.get(CHALLENGER) != candidate:
        registry.move_alias(
            step.model,
            CHALLENGER,
            candidate,
            reason=f"automation: candidate for a {rollout.strategy}",
            gates=gates,
            user=step.controller.actor,
            guard=step.guard(None),
        )
    wanted = Deployment(
        model=step.model,
        champion="champion",
        challenger=CHALLENGER,
        mode=rollout.strategy,
        share=rollout.share,
        sticky_key=current.sticky_key if current else None,
        limits=rollout.limits(),
    )
    state = replace(
        step.state,
        phase="rollout",
        rollout={
            "strategy": rollout.strategy,
            "started_ms": step.now(),
            "champion": champion,
            "revision": (current.revision if current else 0) + 1,
            "gates": gates,
        },
    )
    started = step.event(
        "rollout_started",
        f"{_passed(gates)}; {rollout.strategy} of v{candidate} at {rollout.share:.0%} beside champion v{champion}",
        version=candidate,
        run_id=step.state.run_id,
        detail={"gates": gates, "deployment": wanted.to_dict()},
    )
    deployments.set(
        wanted,
        user=step.controller.actor,
        detail={"reason": f"automation: {rollout.strategy} of v{candidate}"},
        expected_revision=current.revision if current else 0,
        guard=step.guard(state, started),
    )
    step.after(state, started)
    return Outcome(step.model, "rollout", "rollout", started.message)


def _passed(gates: list[dict[str, Any]]) -> str:
    """ "gates passed", with the comparison with the champion's numbers when there was one."""
    compared = [f"{g['gate']} ({g['detail']})" for g in gates if str(g.get("gate", "")).startswith("beats ")]
    return "gates passed" + (f": {'; '.join(compared)}" if compared else "")


def advance(step: Step) -> Outcome | None:
    """Watch a running canary or shadow: promote, roll back, or wait for more traffic."""

    if step.state.phase == "promoting":
        return _finish(step)
    info = step.state.rollout or {}
    deployments = DeploymentStore(step.tracker.stores.db)
    current = deployments.get(step.model)
    if current is None or current.revision != info.get("revision"):
        return _changed(step, current)
    return _watch(step, info, current)


def _watch(step: Step, info: dict[str, Any], current: Deployment) -> Outcome:
    """Measure the challenger since the rollout began and act on the verdict."""
    from loopml.automation.controller import Outcome

    candidate = step.state.candidate or 0
    champion = info.get("champion") or 0
    now = step.now()
    elapsed = now - int(info.get("started_ms", now))
    try:
        found = evidence(
            step.tracker,
            step.model,
            champion=champion,
            challenger=candidate,
            since_ms=int(info.get("started_ms", now)),
            until_ms=now,
            metric=step.policy.rollout.metric,
        )
    except Exception as error:  # unreadable evidence never promotes; past max_hours it rolls back
        why = error.message if isinstance(error, LoopMLError) else f"{type(error).__name__}: {error}"
        if elapsed >= step.policy.rollout.max_hours * 3_600_000:
            return _rollback(
                step, current, f"no readable evidence in {step.policy.rollout.max_hours:g} hours: {why}", {}
            )
        return Outcome(step.model, "rollout", "error", f"canary evidence unreadable: {why}")
    verdict = judge(found, step.policy.rollout, elapsed_ms=elapsed)
    if verdict.action == "promote":
        return _promote(
            step,
            list(info.get("gates") or []),
            champion,
            why=f"{info.get('strategy')} passed: {verdict.reason}",
            canary=found,
        )
    if verdict.action == "rollback":
        return _rollback(step, current, verdict.reason, found)
    step.write(replace(step.state, rollout={**info, "evidence": found}))
    return Outcome(step.model, "rollout", "waiting", verdict.reason)


def _promote(
    step: Step,
    gates: list[dict[str, Any]],
    champion: int | None,
    *,
    why: str,
    canary: dict[str, Any] | None = None,
) -> Outcome:
    from loopml.automation.controller import Outcome

    candidate = step.state.candidate or 0
    state = replace(step.state, phase="promoting", promoted_ms=step.now())
    promoted = step.event(
        "promoted",
        f"v{candidate} promoted to champion (was {'v' + str(champion) if champion else 'unset'}): {why}",
        version=candidate,
        run_id=step.state.run_id,
        detail={"gates": gates, **({"canary": canary} if canary else {})},
    )
    try:
        RegistryStore(step.tracker.stores.db).move_alias(
            step.model,
            "champion",
            candidate,
            reason=f"automation: {why}",
            gates=gates + ([{"canary": canary}] if canary else []),
            user=step.controller.actor,
            check_from=True,
            expected_from=champion,
            guard=step.guard(state, promoted),
        )
    except Conflict as error:  # someone moved the champion meanwhile: their decision stands
        return _abandon(step, f"the champion alias moved while this loop ran ({error.message})")
    step.after(state, promoted)
    _finish(step)
    return Outcome(step.model, step.state.phase, "promoted", promoted.message)


def _finish(step: Step) -> Outcome:
    """After the champion moved: serve it alone again and drop the challenger alias."""
    from loopml.automation.controller import Outcome

    deployments = DeploymentStore(step.tracker.stores.db)
    current = deployments.get(step.model)
    ours = (step.state.rollout or {}).get("revision")
    state = replace(step.state, phase="idle", rollout=None)
    if current is not None and current.mode != "single" and current.revision == ours:
        deployments.set(
            replace(current, challenger=None, mode="single", share=0.0),
            user=step.controller.actor,
            detail={"reason": f"automation: v{step.state.candidate} promoted"},
            expected_revision=current.revision,
            guard=step.guard(state),
        )
    else:
        step.write(state)
    step.state = state
    _drop_challenger(step)
    return Outcome(step.model, "idle", "promoted", f"v{step.state.candidate} is the champion")


def _rollback(step: Step, current: Deployment, reason: str, found: dict[str, Any]) -> Outcome:
    from loopml.automation.controller import Outcome

    candidate = step.state.candidate or 0
    state = replace(step.state, phase="idle", rollout=None)
    rolled = step.event(
        "rolled_back",
        f"v{candidate} rolled back: {reason}; the champion stays",
        version=candidate,
        run_id=step.state.run_id,
        detail={"evidence": found},
    )
    DeploymentStore(step.tracker.stores.db).set(
        replace(current, challenger=None, mode="single", share=0.0),
        user=step.controller.actor,
        detail={"reason": f"automation: rolled back v{candidate}: {reason}"},
        expected_revision=current.revision,
        guard=step.guard(state, rolled),
    )
    step.after(state, rolled)
    _drop_challenger(step)
    return Outcome(step.model, "idle", "rolled_back", rolled.message)


def _changed(step: Step, current: Deployment | None) -> Outcome:
    """The deployment changed under the rollout: a server cut the challenger (a rollback with its evidence),
    or a person changed it (their decision stands; the loop lets go)."""
    revision = (step.state.rollout or {}).get("revision", 0)
    events = DeploymentStore(step.tracker.stores.db).events(step.model)
    breach = next((e for e in events if e.revision > revision and e.kind == "limit_breached"), None)
    if breach is not None and current is not None:
        reason = f"a server cut the challenger: {breach.detail.get('reason') or breach.detail}"
        return _rollback(step, current, reason, {"breach": breach.detail})
    who = current.updated_by if current else "someone"
    return _abandon(step, f"the deployment was changed by {who}; leaving it as it is")


def _abandon(step: Step, why: str) -> Outcome:
    from loopml.automation.controller import Outcome

    deployments = DeploymentStore(step.tracker.stores.db)
    current = deployments.get(step.model)
    ours = (step.state.rollout or {}).get("revision")
    state = replace(step.state, phase="idle", rollout=None)
    abandoned = step.event(
        "superseded", f"rollout of v{step.state.candidate} abandoned: {why}", version=step.state.candidate
    )
    if current is not None and current.mode != "single" and current.revision == ours:
        # Still the loop's own canary (the champion alias moved under it): nobody would watch it any more.
        deployments.set(
            replace(current, challenger=None, mode="single", share=0.0),
            user=step.controller.actor,
            detail={"reason": f"automation: rollout of v{step.state.candidate} abandoned"},
            expected_revision=current.revision,
            guard=step.guard(state, abandoned),
        )
        step.after(state, abandoned)
    else:
        step.write(state, abandoned)
    _drop_challenger(step)
    return Outcome(step.model, "idle", "superseded", why)


def _drop_challenger(step: Step) -> None:
    registry = RegistryStore(step.tracker.stores.db)
    try:
        if registry.get_model(step.model).aliases.get(CHALLENGER) == step.state.candidate:
            registry.move_alias(
                step.model,
                CHALLENGER,
                None,
                reason="automation: rollout over",
                user=step.controller.actor,
                guard=step.guard(None),
            )
    except NotFound:
        pass
