"""The controller's records: a lease per model, where the model's loop stands, and the timeline of decisions.

Leases make two controllers act on a model once: a controller acts only while it holds the model's lease,
renewed while a retrain runs. Each new holder gets a larger `token` (a fencing token); every write of the
loop checks, in its own transaction, that the lease still carries the writer's token, so a controller that
stalled past its lease (a long GC pause, a suspended laptop) and woke up can no longer change anything.

Writes to other stores (an alias move, a deployment) take the same check and the loop's next state as a
`guard` run inside their transaction: the alias moves and the loop records it, or neither happens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from loopml.core.errors import Conflict, NotFound
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.storage.metadata.lookups import model_id_of

Guard = Callable[[Connection], None]


class LeaseLost(Conflict):
    """The controller's lease on a model passed to another controller: its write was refused."""


@dataclass(frozen=True)
class Lease:
    """The right to act on `model` until `expires_ms`, with its fencing `token`."""

    model: str
    holder: str
    token: int
    expires_ms: int


@dataclass
class LoopState:
    """Where a model's loop stands. `phase`: idle | training | gating | rollout | promoting.

    The cursors say what the triggers have already seen: the last scheduled time handled, the dataset
    version last trained on, the last monitoring alert and manual request considered.
    """

    phase: str = "idle"
    loop_id: str | None = None
    trigger: dict[str, Any] | None = None
    attempt: int = 0
    started_ms: int | None = None
    retry_at_ms: int | None = None
    run_id: str | None = None
    candidate: int | None = None
    rollout: dict[str, Any] | None = None
    schedule_ms: int | None = None
    data_version: int | None = None
    data_rows: int | None = None  # rows of the dataset version the last retrain read
    data_files: str | None = None  # fingerprint of the files a `data.path` matched when last versioned
    window_ms: int = 0  # computed time of the last monitored window judged
    alert_id: int = 0
    manual_id: int = 0
    promoted_ms: int | None = None
    retrains: list[int] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> LoopState:
        """The state as stored (keys a newer LoopML added are ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


@dataclass(frozen=True)
class Event:
    """One decision or happening of a model's loop, with its evidence."""

    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    loop_id: str | None = None
    run_id: str | None = None
    version: int | None = None
    actor: str | None = None
    time: int = 0
    event_id: int | None = None
    model: str = ""


class AutomationStore:
    """Leases, loop states and timeline events in the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- leases ---------------------------------------------------------------------------------------------

    def acquire(self, model: str, holder: str, *, now_ms: int, ttl_ms: int) -> Lease | None:
        """Take the lease on `model` when it is free, expired or already ours; else None. Every acquisition
        gets a new token (even by the same holder), so two acquirers that read the same row cannot both win:
        the update is conditional on the token they read."""

        def change(conn: Connection) -> Lease | None:
            model_id = model_id_of(conn, model)
            c = t.automation_leases.c
            row = conn.execute(
                select(c.holder, c.token, c.expires_time).where(c.model_id == model_id)
            ).first()
            expires = now_ms + ttl_ms
            if row is None:
                conn.execute(
                    t.automation_leases.insert(),
                    {"model_id": model_id, "holder": holder, "token": 1, "expires_time": expires},
                )
                return Lease(model, holder, 1, expires)
            if row.holder != holder and row.expires_time > now_ms:
                return None
            token = row.token + 1
            taken = conn.execute(
                update(t.automation_leases)
                .where(c.model_id == model_id, c.token == row.token, c.holder == row.holder)
                .values(holder=holder, token=token, expires_time=expires)
            )
            return Lease(model, holder, token, expires) if taken.rowcount == 1 else None

        try:
            return self.db.transact(change)
        except IntegrityError:  # another controller inserted the first lease at the same moment
            return None

    def renew(self, lease: Lease, *, now_ms: int, ttl_ms: int) -> Lease:
        """The same lease with a later expiry; `LeaseLost` when another controller holds it now."""

        def change(conn: Connection) -> Lease:
            expires = now_ms + ttl_ms
            c = t.automation_leases.c
            renewed = conn.execute(
                update(t.automation_leases)
                .where(
                    c.model_id == model_id_of(conn, lease.model),
                    c.token == lease.token,
                    c.holder == lease.holder,
                )
                .values(expires_time=expires)
            )
            if renewed.rowcount != 1:
                self._check(conn, lease)  # raises LeaseLost, saying who holds it
            return Lease(lease.model, lease.holder, lease.token, expires)

        return self.db.transact(change)

    def release(self, lease: Lease) -> None:
        """Give the lease up early (if still ours), so the next controller need not wait for it to expire."""

        def change(conn: Connection) -> None:
            c = t.automation_leases.c
            conn.execute(
                update(t.automation_leases)
                .where(
                    c.model_id == model_id_of(conn, lease.model),
                    c.token == lease.token,
                    c.holder == lease.holder,
                )
                .values(expires_time=0)
            )

        self.db.transact(change)

    def _check(self, conn: Connection, lease: Lease) -> str:
        c = t.automation_leases.c
        model_id = model_id_of(conn, lease.model)
        # FOR UPDATE: on PostgreSQL a plain read takes no lock, so a new holder could commit between this
        # check and the write it guards; the row lock makes a concurrent acquire wait for this transaction.
        row = conn.execute(select(c.holder, c.token).where(c.model_id == model_id).with_for_update()).first()
        if row is None or row.token != lease.token or row.holder != lease.holder:
            raise LeaseLost(
                f"the automation lease on {lease.model} passed to another controller "
                f"(token {row.token if row else None}, this one holds {lease.token}); nothing was written"
            )
        return model_id

    # -- loop state and events ------------------------------------------------------------------------------

    def state(self, model: str) -> LoopState:
        """Where the loop of `model` stands (a fresh idle state if it never ran)."""
        c = t.automation_loops.c
        with self.db.read() as conn:
            text = conn.execute(select(c.state_json).where(c.model_id == model_id_of(conn, model))).scalar()
        return LoopState() if text is None else LoopState.from_json(text)

    def guard(self, lease: Lease, state: LoopState | None, events: Sequence[Event], *, now_ms: int) -> Guard:
        """A check-and-write to run inside another store's transaction: the lease is still ours, then the
        loop's new state and its events are written with that store's change."""

        def run(conn: Connection) -> None:
            model_id = self._check(conn, lease)
            if state is not None:
                values = {"state_json": json.dumps(asdict(state), sort_keys=True), "token": lease.token}
                done = conn.execute(
                    update(t.automation_loops)
                    .where(t.automation_loops.c.model_id == model_id)
                    .values(**values, updated_time=now_ms)
                )
                if done.rowcount == 0:
                    conn.execute(
                        t.automation_loops.insert(), {"model_id": model_id, **values, "updated_time": now_ms}
                    )
            for event in events:
                conn.execute(t.automation_events.insert(), _event_row(model_id, event, now_ms, lease.token))

        return run

    def write(self, lease: Lease, state: LoopState | None, events: Sequence[Event], *, now_ms: int) -> None:
        """Write the loop's new state and events in one transaction, if the lease is still ours."""
        self.db.transact(self.guard(lease, state, events, now_ms=now_ms))

    def add_event(self, model: str, event: Event, *, now_ms: int) -> Event:
        """Append an event outside the loop (a manual request, a note): no lease needed."""

        def change(conn: Connection) -> int:
            row = _event_row(model_id_of(conn, model), event, now_ms, None)
            key = conn.execute(t.automation_events.insert(), row).inserted_primary_key
            return int(key[0]) if key is not None else 0

        event_id = self.db.transact(change)
        return Event(**{**asdict(event), "event_id": event_id, "time": now_ms, "model": model})

    def events(self, model: str, *, after_id: int = 0, kinds: Sequence[str] | None = None) -> list[Event]:
        """The timeline of `model`, oldest first; `after_id` and `kinds` narrow it."""
        e = t.automation_events.c
        with self.db.read() as conn:
            query = select(t.automation_events).where(
                e.model_id == model_id_of(conn, model), e.event_id > after_id
            )
            if kinds is not None:
                query = query.where(e.kind.in_(list(kinds)))
            rows = conn.execute(query.order_by(e.event_id)).all()
        return [_event(row, model) for row in rows]

    def timeline(
        self,
        model: str | None = None,
        *,
        kinds: Sequence[str] | None = None,
        loop_id: str | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        limit: int = 50,
    ) -> list[Event]:
        """Events of every model (or of `model`) newest first, at most `limit` of them: the newest ones, the
        ones just older than `before_id`, or the ones just newer than `after_id` (the pages of the web UI's
        timeline). `kinds` and `loop_id` narrow it."""
        e = t.automation_events.c
        with self.db.read() as conn:
            query = select(t.automation_events, t.registered_models.c.name).join(
                t.registered_models, t.registered_models.c.model_id == e.model_id
            )
            if model is not None:
                query = query.where(e.model_id == model_id_of(conn, model))
            if kinds is not None:
                query = query.where(e.kind.in_(list(kinds)))
            if loop_id is not None:
                query = query.where(e.loop_id == loop_id)
            if before_id is not None:
                query = query.where(e.event_id < before_id)
            if after_id is not None:
                query = query.where(e.event_id > after_id)
            # Just newer than `after_id` means the oldest of those: read upwards, then turn them around.
            order = e.event_id.asc() if after_id is not None and before_id is None else e.event_id.desc()
            rows = conn.execute(query.order_by(order).limit(limit)).all()
        found = [_event(row, row.name) for row in rows]
        return sorted(found, key=lambda event: event.event_id or 0, reverse=True)

    def event(self, event_id: int) -> Event:
        """One event of any model's timeline; `NotFound` when there is none with that id."""
        e = t.automation_events.c
        with self.db.read() as conn:
            row = conn.execute(
                select(t.automation_events, t.registered_models.c.name)
                .join(t.registered_models, t.registered_models.c.model_id == e.model_id)
                .where(e.event_id == event_id)
            ).first()
        if row is None:
            raise NotFound(f"no automation event {event_id}")
        return _event(row, row.name)


def _event(row: Any, model: str) -> Event:
    return Event(
        kind=row.kind,
        message=row.message,
        detail=json.loads(row.detail_json) if row.detail_json else {},
        loop_id=row.loop_id,
        run_id=row.run_id,
        version=row.version,
        actor=row.actor,
        time=row.time,
        event_id=row.event_id,
        model=model,
    )


def _event_row(model_id: str, event: Event, now_ms: int, token: int | None) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "loop_id": event.loop_id,
        "kind": event.kind,
        "message": event.message,
        "detail_json": json.dumps(event.detail, sort_keys=True, default=str) if event.detail else None,
        "run_id": event.run_id,
        "version": event.version,
        "actor": event.actor,
        "token": token,
        "time": event.time or now_ms,
    }
