"""Deployments: the desired serving state of a model, and the append-only trail of every change to it.

A deployment says which alias (or version) answers requests (`champion`), which one is tried beside it
(`challenger`), and how: `single` (champion only), `canary` (a `share` of requests answered by the
challenger, optionally sticky by a request header so one customer always sees one version) or `shadow` (the
champion answers; a `share` of requests is also run by the challenger and logged, never returned). `limits`
bound the challenger (error rate, p99 latency, after a minimum of requests); a server that sees them breached
sets the share to 0 and records why. Every change bumps `revision`, so servers poll one integer, and appends
an event, in the same transaction. The CLI (`loopml deploy set|show`), Python (`loopml.models.deploy`), the
automation controller and the UI all write through `DeploymentStore.set`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from loopml.core.clock import now_ms
from loopml.core.errors import Conflict, InvalidInput
from loopml.registry.records import ModelRef
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database
from loopml.storage.metadata.lookups import model_id_of

MODES = ("single", "canary", "shadow")
LIMIT_KEYS = ("max_error_rate", "max_p99_ms", "min_requests")


@dataclass(frozen=True)
class Deployment:
    """How a model is served: champion, challenger, mode, share, sticky key, limits; `revision` counts changes."""

    model: str
    champion: str = "champion"
    challenger: str | None = None
    mode: str = "single"
    share: float = 0.0
    sticky_key: str | None = None
    limits: dict[str, float] = field(default_factory=dict)
    revision: int = 0
    updated_by: str | None = None
    updated_time: int = 0

    def __post_init__(self) -> None:
        for role in ("champion", "challenger"):
            ref = getattr(self, role)
            if ref is not None:
                ModelRef.parse(f"{self.model}@{ref}")  # an alias or vN: InvalidInput otherwise
        if self.mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if (
            isinstance(self.share, bool)
            or not isinstance(self.share, int | float)
            or not 0 <= self.share <= 1
        ):
            raise InvalidInput(f"share must be a number from 0 to 1 (e.g. 0.1 for 10%), got {self.share!r}")
        if self.mode != "single" and self.challenger is None:
            raise InvalidInput(f"a {self.mode} deployment needs a challenger (an alias such as 'challenger')")
        if self.challenger is not None and self.challenger == self.champion:
            raise InvalidInput("the challenger must differ from the champion")
        unknown = sorted(set(self.limits) - set(LIMIT_KEYS))
        if unknown:
            raise InvalidInput(f"unknown limits {unknown}; limits are {', '.join(LIMIT_KEYS)}")
        for key, value in self.limits.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidInput(f"limit {key} must be a non-negative number, got {value!r}")
        if self.sticky_key is not None and (
            not isinstance(self.sticky_key, str) or not self.sticky_key.strip()
        ):
            raise InvalidInput("sticky_key names a request header, e.g. X-Customer-Id")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True)
class DeploymentEvent:
    """One change of a deployment: `set` by a user or the controller, `limit_breached` by a server."""

    model: str
    revision: int
    kind: str
    detail: dict[str, Any]
    user: str | None
    time: int


class DeploymentStore:
    """Deployments and their events in the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> Deployment | None:
        """The deployment of model `name`, or None when it has none (`NotFound` for an unknown model)."""
        with self.db.read() as conn:
            model_id = model_id_of(conn, name)
            row = conn.execute(select(t.deployments).where(t.deployments.c.model_id == model_id)).first()
        return None if row is None else _from_row(name, row)

    def revision(self, name: str) -> int:
        """The deployment's revision (0 when it has none): what a server polls."""
        with self.db.read() as conn:
            query = (
                select(t.deployments.c.revision)
                .join(t.registered_models, t.registered_models.c.model_id == t.deployments.c.model_id)
                .where(t.registered_models.c.name == name)
            )
            return int(conn.execute(query).scalar() or 0)

    def set(
        self,
        deployment: Deployment,
        *,
        user: str | None = None,
        kind: str = "set",
        detail: Mapping[str, Any] | None = None,
        expected_revision: int | None = None,
        guard: Callable[[Connection], None] | None = None,
    ) -> Deployment:
        """Write `deployment` as the model's new state and append the event, in one transaction.

        With `expected_revision`, the write happens only if nobody changed the deployment since that revision
        (`Conflict` otherwise): a server lowering a share must not undo a user's newer change. `guard` runs
        first in the same transaction (the automation controller's lease check and record); if it raises,
        nothing changes.
        """

        def change(conn: Connection) -> Deployment:
            if guard is not None:
                guard(conn)
            model_id = model_id_of(conn, deployment.model)
            current = conn.execute(
                select(t.deployments.c.revision).where(t.deployments.c.model_id == model_id)
            ).scalar()
            if expected_revision is not None and (current or 0) != expected_revision:
                raise Conflict(
                    f"the deployment of {deployment.model} changed (revision {current}, expected "
                    f"{expected_revision}); look again and retry"
                )
            now = now_ms()
            written = Deployment(
                **{
                    **asdict(deployment),
                    "revision": (current or 0) + 1,
                    "updated_by": user,
                    "updated_time": now,
                }
            )
            values = {
                "champion": written.champion,
                "challenger": written.challenger,
                "mode": written.mode,
                "share": float(written.share),
                "sticky_key": written.sticky_key,
                "limits_json": json.dumps(written.limits, sort_keys=True),
                "revision": written.revision,
                "updated_by": user,
                "updated_time": now,
            }
            if current is None:
                conn.execute(t.deployments.insert(), {"model_id": model_id, **values})
            else:
                conn.execute(t.deployments.update().where(t.deployments.c.model_id == model_id), values)
            event_detail = {"deployment": written.to_dict(), **(detail or {})}
            conn.execute(
                t.deployment_events.insert(),
                {
                    "model_id": model_id,
                    "revision": written.revision,
                    "kind": kind,
                    "detail_json": json.dumps(event_detail, sort_keys=True, default=str),
                    "user_name": user,
                    "time": now,
                },
            )
            return written

        return self.db.transact(change)

    def list_deployments(self) -> list[Deployment]:
        """The deployment of every model that has one, by model name."""
        m = t.registered_models.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.deployments, m.name)
                .join(t.registered_models, m.model_id == t.deployments.c.model_id)
                .order_by(m.name)
            ).all()
        return [_from_row(row.name, row) for row in rows]

    def events(self, name: str, *, limit: int | None = None) -> list[DeploymentEvent]:
        """Every change of the deployment of `name`, oldest first (with `limit`: the newest `limit` ones)."""
        e = t.deployment_events.c
        with self.db.read() as conn:
            query = select(t.deployment_events).where(e.model_id == model_id_of(conn, name))
            if limit is None:
                rows = conn.execute(query.order_by(e.event_id)).all()
            else:
                rows = conn.execute(query.order_by(e.event_id.desc()).limit(limit)).all()[::-1]
        return [
            DeploymentEvent(name, r.revision, r.kind, json.loads(r.detail_json or "{}"), r.user_name, r.time)
            for r in rows
        ]


def _from_row(name: str, row: Any) -> Deployment:
    return Deployment(
        model=name,
        champion=row.champion,
        challenger=row.challenger,
        mode=row.mode,
        share=row.share,
        sticky_key=row.sticky_key,
        limits=json.loads(row.limits_json or "{}"),
        revision=row.revision,
        updated_by=row.updated_by,
        updated_time=row.updated_time,
    )
