"""The controller: one tick evaluates every model's policy and moves its loop on by as many steps as it can.

    idle ──trigger──► training ──run ok──► gating ──gates pass──► rollout (canary/shadow) ──► promoting ──► idle
      ▲                 │ fails: retry      │ refused                │ regression: rolled back             │
      └─────────────────┴───────────────────┴────────────────────────┴─────────────────────────────────────┘

A tick takes the model's lease first (`AutomationStore.acquire`); without it, the model is left to the
controller that holds it. Each step ends with one fenced write of the loop's next state and its timeline
event, in the same transaction as the alias move or deployment change it decides, so a controller killed at
any point leaves a state the next tick continues from: a training found unfinished is counted as a failed
attempt (retried per policy, never run twice at once), gates are evaluated again, and a rollout continues.
The controller owns the decisions; a server only cuts a misbehaving challenger's share to 0 and records why,
which the next tick reads as a rollback.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.automation import rollout as rollouts
from loopml.automation.policy import Policy, policies
from loopml.automation.store import AutomationStore, Event, Lease, LeaseLost, LoopState
from loopml.automation.triggers import held_back, look
from loopml.core.errors import InvalidInput, LoopMLError
from loopml.core.ids import new_id

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

log = logging.getLogger("loopml.automation")

DEFAULT_LEASE_S = 300.0


@dataclass(frozen=True)
class Outcome:
    """What one tick did for one model."""

    model: str
    phase: str  # where the loop stands after the tick
    # nothing | busy | held | retrained | failed | refused | promoted | rollout | rolled_back | waiting |
    # superseded | error
    action: str
    message: str


class Controller:
    """Runs the loops of the project's models (`loopml agent`, `loopml agent tick`).

    `clock` returns epoch milliseconds (tests pass their own, so schedules and canaries run without
    sleeping); `holder` names this controller in leases and the timeline.
    """

    def __init__(
        self,
        tracker: Tracker,
        *,
        models: Sequence[str] | None = None,
        clock: Callable[[], int] | None = None,
        holder: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        monitor: bool = True,
    ) -> None:
        self.tracker = tracker
        self.store = AutomationStore(tracker.stores.db)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = int(lease_s * 1000)
        self.monitor = monitor
        self.policies = self._policies(models)

    @property
    def actor(self) -> str:
        """Who the registry and deployment trails name for the controller's changes."""
        return f"loopml-agent ({self.holder})"

    def tick(self) -> list[Outcome]:
        """One evaluation of every model's loop."""
        return [self.tick_model(policy) for policy in self.policies.values()]

    def run_forever(self, *, interval_s: float = 60.0, stop: threading.Event | None = None) -> None:
        """Tick every `interval_s` seconds until `stop` is set (`loopml agent`)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            for outcome in self.tick():
                if outcome.action not in ("nothing", "waiting"):
                    log.info("%s: %s (%s)", outcome.model, outcome.message, outcome.phase)
            stop.wait(interval_s)

    def tick_model(self, policy: Policy) -> Outcome:
        """Move the loop of one model on, holding its lease meanwhile. A problem with one model (not
        registered, its store unreachable, a bug) is its outcome, never the end of the other models' ticks."""
        try:
            return self._tick_model(policy)
        except LoopMLError as error:
            log.warning("automation of %s: %s", policy.model, error.message)
            return Outcome(policy.model, "?", "error", error.message)
        except Exception as error:
            log.exception("automation of %s failed", policy.model)
            return Outcome(policy.model, "?", "error", f"{type(error).__name__}: {error}")

    def _tick_model(self, policy: Policy) -> Outcome:
        lease = self.store.acquire(policy.model, self.holder, now_ms=self.clock(), ttl_ms=self.lease_ms)
        if lease is None:
            return Outcome(policy.model, "?", "busy", "another controller holds the lease")
        try:
            if self.monitor:
                self._monitor(policy)
            return Step(self, policy, lease).advance()
        except LeaseLost as error:
            return Outcome(policy.model, "?", "busy", error.message)
        finally:
            try:
                self.store.release(lease)
            except LoopMLError:  # expiry frees it anyway
                log.debug("lease release failed", exc_info=True)

    def _monitor(self, policy: Policy) -> None:
        from loopml.monitoring.config import monitor_config
        from loopml.monitoring.cycle import monitor_cycle

        try:
            config = monitor_config(self.tracker.settings.project_dir, policy.model)
            monitor_cycle(
                self.tracker,
                policy.model,
                now_ms=self.clock(),
                granularity=config.granularity,
                grace_ms=config.grace_ms,
            )
        except LoopMLError as error:  # monitoring problems are its own to report; the loop carries on
            log.warning("monitoring %s failed: %s", policy.model, error.message)
        except Exception:
            log.exception("monitoring %s failed; the loop carries on", policy.model)

    def _policies(self, models: Sequence[str] | None) -> dict[str, Policy]:
        found = policies(self.tracker.settings.project_dir)
        if models is None:
            return found
        missing = sorted(set(models) - set(found))
        if missing:
            raise InvalidInput(
                f"no automation policy for {', '.join(missing)} in loopml.toml "
                f"(models with one: {', '.join(sorted(found)) or 'none'})"
            )
        return {name: found[name] for name in models}


class Step:
    """One tick's work on one model's loop, under one lease."""

    def __init__(self, controller: Controller, policy: Policy, lease: Lease) -> None:
        self.controller = controller
        self.tracker = controller.tracker
        self.store = controller.store
        self.policy = policy
        self.model = policy.model
        self.lease = lease
        self.state = self.store.state(self.model)

    def now(self) -> int:
        return self.controller.clock()

    def event(self, kind: str, message: str, **fields: Any) -> Event:
        return Event(
            kind=kind, message=message, loop_id=self.state.loop_id, actor=self.controller.actor, **fields
        )

    def write(self, state: LoopState | None, *events: Event) -> None:
        """The loop's next state and its events, fenced by the lease, in one transaction."""
        self.store.write(self.lease, state, events, now_ms=self.now())
        if state is not None:
            self.state = state
        notify(self.tracker, self.policy, events, now_ms=self.now())

    def guard(self, state: LoopState | None, *events: Event) -> Any:
        """The same, to run inside another store's transaction (an alias move, a deployment change)."""
        return self.store.guard(self.lease, state, events, now_ms=self.now())

    def after(self, state: LoopState, *events: Event) -> None:
        """Bookkeeping once a guarded write committed."""
        self.state = state
        notify(self.tracker, self.policy, events, now_ms=self.now())

    # -- the phases -------------------------------------------------------------------------------------------

    def advance(self) -> Outcome:
        """Run phases until the loop has to wait (for a trigger, a retry time, canary traffic)."""
        outcome = Outcome(self.model, self.state.phase, "nothing", "no trigger fired")
        for _ in range(8):  # at most one full loop per tick
            phase = self.state.phase
            if phase == "idle":
                result = self.idle()
            elif phase == "training":
                result = self.interrupted()
            elif phase == "retry":
                result = self.retry()
            elif phase == "gating":
                result = self.gate()
            elif phase in ("rollout", "promoting"):
                result = rollouts.advance(self)
            else:
                raise InvalidInput(f"the loop of {self.model} is in an unknown phase {phase!r}")
            if result is not None and (result.action != "waiting" or outcome.action == "nothing"):
                outcome = result  # "waiting" after a decision in the same tick does not hide the decision
            if result is None or self.state.phase in (phase, "idle"):
                break  # waiting, or a loop just ended: the next one starts at the next tick
        return replace(outcome, phase=self.state.phase)

    def idle(self) -> Outcome | None:
        found = look(
            self.tracker,
            self.policy,
            self.state,
            now_ms=self.now(),
            champion=champion_of(self.tracker, self.model),
        )
        state = replace(self.state, **found.cursors)
        if not found.fired:
            if state != self.state:
                self.write(state)
            return None
        reason = held_back(self.policy, self.state, found.fired, found, now_ms=self.now())
        triggers = [f.to_dict() for f in found.fired]
        if reason is not None:
            # The cause is consumed (said once in the timeline); newer data fires again and the guard then
            # counts the rows gained since the last retrain, not since this look.
            state = replace(state, data_version=(found.data or {}).get("version", state.data_version))
            self.write(
                state, self.event("held", f"retrain held back: {reason}", detail={"triggers": triggers})
            )
            return Outcome(self.model, "idle", "held", reason)
        data = found.data or {}
        state = replace(
            state,
            phase="training",
            loop_id=new_id(),
            trigger={"fired": triggers, "data": data},
            attempt=1,
            started_ms=self.now(),
            retry_at_ms=None,
            run_id=None,
            candidate=None,
            rollout=None,
            data_version=data.get("version", state.data_version),
            data_rows=data.get("rows", state.data_rows),
            retrains=[t for t in state.retrains if t > self.now() - 86_400_000] + [self.now()],
        )
        self.state = state  # the events below carry the new loop id
        self.write(
            state,
            self.event(
                "triggered",
                "; also ".join(f.reason for f in found.fired),  # which signals fired, each in its words
                detail={"triggers": triggers, "data": data},
            ),
        )
        return self.train()

    def train(self) -> Outcome:
        """Run the pipeline on the current data (the lease renewed meanwhile); on to the gates."""
        from loopml.pipelines.runner import PipelineFailed

        params = dict(self.policy.params)
        data = (self.state.trigger or {}).get("data") or {}
        if self.policy.data and data.get("ref"):
            params[self.policy.data_param] = data["ref"]
        self.write(
            None,
            self.event(
                "training_started",
                f"training {self.policy.pipeline} (attempt {self.state.attempt})"
                + (f" on {data['ref']}" if data.get("ref") else ""),
                detail={"params": params},
            ),
        )
        try:
            with Renewer(self.controller, self.lease):
                pipeline = load_policy_pipeline(self.tracker.settings.project_dir, self.policy.pipeline)
                result = pipeline.run(params, tracker=self.tracker)
        except PipelineFailed as error:
            return self.failed(error.message, run_id=error.run_id)
        except LoopMLError as error:
            return self.failed(error.message, run_id=None)
        except Exception as error:  # the user's pipeline code raised before any step ran
            return self.failed(f"{type(error).__name__}: {error}", run_id=None)
        return self.trained(result.run_id, result.value, [s.run_id for s in result.record.steps if s.run_id])

    def trained(self, run_id: str, value: Any, step_runs: Sequence[str]) -> Outcome:
        candidate = candidate_version(self.tracker, self.model, {run_id, *step_runs}, value)
        champion = champion_of(self.tracker, self.model)
        if candidate is None or candidate == champion:
            why = (
                "the pipeline registered no version of the model"
                if candidate is None
                else f"the pipeline produced v{candidate}, which is already the champion"
            )
            state = replace(self.state, phase="idle", run_id=run_id)
            self.write(state, self.event("no_candidate", f"nothing to promote: {why}", run_id=run_id))
            return Outcome(self.model, "idle", "retrained", why)
        state = replace(self.state, phase="gating", run_id=run_id, candidate=candidate)
        self.write(
            state,
            self.event("trained", f"retrained: {self.model}@v{candidate}", run_id=run_id, version=candidate),
        )
        return Outcome(self.model, "gating", "retrained", f"v{candidate} registered by run {run_id}")

    def failed(self, message: str, *, run_id: str | None) -> Outcome:
        """A training that failed: retried per policy, the champion untouched."""
        attempt = self.state.attempt
        detail = {"error": message[:4000], "attempt": attempt}
        lines = [line.strip() for line in message.splitlines() if line.strip()] or ["unknown error"]
        # A pipeline failure reads "failed in step X (run R)" then the step's traceback: its last line says why.
        first_line = lines[0] if len(lines) == 1 else f"{lines[-1]} ({lines[0]})"
        if attempt <= self.policy.retries:
            retry_at = self.now() + int(self.policy.retry_delay_minutes * 60_000)
            state = replace(self.state, phase="retry", retry_at_ms=retry_at, run_id=run_id)
            self.write(
                state,
                self.event(
                    "training_failed",
                    f"training failed (attempt {attempt} of {self.policy.retries + 1}): {first_line}; "
                    f"retrying in {self.policy.retry_delay_minutes:g} minutes",
                    detail=detail,
                    run_id=run_id,
                ),
            )
            return Outcome(self.model, "retry", "failed", first_line)
        state = replace(self.state, phase="idle", run_id=run_id, retry_at_ms=None)
        self.write(
            state,
            self.event(
                "training_failed",
                f"training failed (attempt {attempt} of {self.policy.retries + 1}): {first_line}; "
                "giving up, the champion stays",
                detail={**detail, "gave_up": True},
                run_id=run_id,
            ),
        )
        return Outcome(self.model, "idle", "failed", first_line)

    def interrupted(self) -> Outcome:
        """A training this controller did not start was found unfinished: its controller died or lost the
        lease. A run that did finish is taken over; one that did not counts as a failed attempt."""
        from loopml.pipelines.store import PipelineStore
        from loopml.tracking.records import RunStatus

        started = self.state.started_ms or 0
        pipeline = load_policy_pipeline(self.tracker.settings.project_dir, self.policy.pipeline)
        runs = [
            r
            for r in PipelineStore(self.tracker.stores.db).list_runs(
                pipeline=pipeline.qualified_name, limit=5
            )
            if r.created_time >= started - 1000
        ]
        finished = [r for r in runs if r.status == RunStatus.FINISHED.value]
        if finished:
            record = PipelineStore(self.tracker.stores.db).get_run(finished[0].run_id)
            return self.trained(record.run_id, record.result, [s.run_id for s in record.steps if s.run_id])
        run_id = runs[0].run_id if runs else None
        return self.failed("the controller running this training stopped before it finished", run_id=run_id)

    def retry(self) -> Outcome | None:
        if self.state.retry_at_ms is not None and self.now() < self.state.retry_at_ms:
            return Outcome(self.model, "retry", "waiting", "waiting to retry the training")
        self.state = replace(
            self.state,
            phase="training",
            attempt=self.state.attempt + 1,
            started_ms=self.now(),
            retry_at_ms=None,
        )
        self.write(self.state)
        return self.train()

    def gate(self) -> Outcome:
        """The challenger against the champion on the same held-out rows: refused, or on to the rollout."""
        from loopml.registry.promoter import check_gates
        from loopml.registry.store import RegistryStore

        registry = RegistryStore(self.tracker.stores.db)
        candidate = self.state.candidate or 0
        challenger = registry.get_version(f"{self.model}@v{candidate}")
        champion = champion_of(self.tracker, self.model)
        run_id = self.state.run_id
        try:
            check = check_gates(self.tracker, challenger, alias="champion", holder_version=champion)
        except Exception as error:  # scoring failed: refused (the champion stays), said once, not retried
            why = error.message if isinstance(error, LoopMLError) else f"{type(error).__name__}: {error}"
            state = replace(self.state, phase="idle")
            self.write(
                state,
                self.event(
                    "refused",
                    f"v{candidate} could not be evaluated: {why}",
                    version=candidate,
                    run_id=run_id,
                    detail={"error": why},
                ),
            )
            return Outcome(self.model, "idle", "refused", why)
        if not check.passed:
            state = replace(self.state, phase="idle")
            message = check.refusal(challenger.ref, "champion")
            refused = self.event(
                "refused", message, version=candidate, run_id=run_id, detail={"gates": check.evidence}
            )
            registry.record_refusal(
                self.model,
                "champion",
                candidate,
                reason=f"automation: {message}",
                gates=check.evidence,
                user=self.controller.actor,
                guard=self.guard(state, refused),
            )
            self.after(state, refused)
            return Outcome(self.model, "idle", "refused", message)
        return rollouts.start(self, check.evidence, champion)


class Renewer:
    """Renews the lease in the background while a training runs (every third of its time to live)."""

    def __init__(self, controller: Controller, lease: Lease) -> None:
        self.controller = controller
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopml-lease", daemon=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        every = max(0.05, self.controller.lease_ms / 3000)
        while not self._stop.wait(every):
            try:
                self.controller.store.renew(
                    self.lease, now_ms=self.controller.clock(), ttl_ms=self.controller.lease_ms
                )
            except LeaseLost:
                return  # the fenced write after the training will say so
            except Exception:  # a passing database error: try again at the next beat
                log.warning("renewing the automation lease failed; retrying", exc_info=True)


def load_policy_pipeline(project_dir: Path, target: str) -> Any:
    """The policy's pipeline; a `file.py:function` target is relative to the project folder."""
    from loopml.pipelines.pipeline import load_pipeline

    module, _, function = target.rpartition(":")
    if module.endswith(".py") and not Path(module).is_absolute():
        target = f"{project_dir / module}:{function}"
    return load_pipeline(target)


def champion_of(tracker: Tracker, model: str) -> int | None:
    """The version the champion alias points at (None before the first promotion)."""
    from loopml.registry.store import RegistryStore

    return RegistryStore(tracker.stores.db).get_model(model).aliases.get("champion")


def candidate_version(tracker: Tracker, model: str, run_ids: set[str], value: Any) -> int | None:
    """The version of `model` the pipeline run registered: by lineage (a version whose run is the pipeline's
    or one of its steps'), else a `model@vN` in its return value (the registry answers an identical model
    with the existing version, whose run is older)."""
    from loopml.registry.store import RegistryStore

    for version in RegistryStore(tracker.stores.db).list_versions(model):
        if version.run_id in run_ids:
            return version.version
    pattern = re.compile(rf"^{re.escape(model)}@v(\d+)$")
    found = [int(m.group(1)) for text in _strings(value) if (m := pattern.match(text))]
    return max(found) if found else None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


SEVERITY = {"training_failed": "critical", "refused": "warning", "rolled_back": "critical"}
NOTIFIED = {"training_failed", "refused", "promoted", "rolled_back", "rollout_started"}


def notify(tracker: Tracker, policy: Policy, events: Sequence[Event], *, now_ms: int) -> None:
    """Tell the policy's channels about each decision (a failing channel is logged, never raised)."""
    if not policy.channels:
        return
    from loopml.monitoring.alert_store import Alert
    from loopml.monitoring.channels import deliver, load_channels

    chosen = [e for e in events if e.kind in NOTIFIED]
    if not chosen:
        return
    try:
        channels = load_channels(tracker.settings.project_dir)
    except LoopMLError as error:
        log.warning("automation notifications for %s not sent: %s", policy.model, error.message)
        return
    for event in chosen:
        alert = Alert(
            model=policy.model,
            version=event.version,
            rule=f"automation.{event.kind}",
            metric="automation",
            severity=SEVERITY.get(event.kind, "info"),
            value=None,
            threshold=None,
            message=f"{policy.model}: {event.message}",
            time=now_ms,
            channels=policy.channels,
        )
        deliver(alert, channels)
