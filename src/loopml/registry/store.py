"""The registry's records in the metadata database: one transaction per logical change.

A version is added together with its model (created on first use) and its tags; an alias move writes the
alias and its audit event together, so the trail can never disagree with the aliases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from loopml.core.clock import now_ms
from loopml.core.errors import Conflict, InvalidInput, NotFound
from loopml.core.ids import new_id
from loopml.registry.records import AliasEvent, ModelRef, ModelVersion, Registered, RegisteredModel
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database

REGISTER_ATTEMPTS = 50  # each lost race means another writer made progress
_ALIAS = re.compile(r"[A-Za-z_][\w.-]{0,249}", re.ASCII)
_VERSION_LIKE = re.compile(r"latest|v\d+")


class RegistryStore:
    """Registered models, versions, tags, aliases and alias events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions -------------------------------------------------------------------------------------------

    def add_version(
        self,
        name: str,
        *,
        flavor: str,
        content_hash: str,
        package_digest: str,
        run_id: str | None = None,
        signature: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str | None = None,
        created_by: str | None = None,
        tags: Mapping[str, str] | None = None,
        source_uri: str | None = None,
        logged_model_id: str | None = None,
    ) -> Registered:
        """Add the next version of `name` (the model is created on first use); the same content returns the
        version that has it."""

        def change(conn: Connection) -> tuple[str, bool]:
            now = now_ms()
            model_id = self._model_id(conn, name, create=True, now=now)
            existing = conn.execute(
                select(t.model_versions.c.version_id).where(
                    t.model_versions.c.model_id == model_id, t.model_versions.c.content_hash == content_hash
                )
            ).scalar()
            if existing is not None:
                return existing, False
            number = (
                conn.execute(
                    select(func.max(t.model_versions.c.version)).where(
                        t.model_versions.c.model_id == model_id
                    )
                ).scalar()
                or 0
            ) + 1
            version_id = new_id()
            conn.execute(
                t.model_versions.insert(),
                {
                    "version_id": version_id,
                    "model_id": model_id,
                    "version": number,
                    "flavor": flavor,
                    "content_hash": content_hash,
                    "package_digest": package_digest,
                    "run_id": run_id,
                    "signature_json": json.dumps(signature, sort_keys=True)
                    if signature is not None
                    else None,
                    "metrics_json": json.dumps(dict(metrics or {}), sort_keys=True),
                    "description": description,
                    "created_by": created_by,
                    "created_time": now,
                    "source_uri": source_uri,
                    "logged_model_id": logged_model_id,
                },
            )
            if tags:
                conn.execute(
                    t.model_version_tags.insert(),
                    [{"version_id": version_id, "key": k, "value": v} for k, v in tags.items()],
                )
            conn.execute(
                update(t.registered_models)
                .where(t.registered_models.c.model_id == model_id)
                .values(updated_time=now)
            )
            return version_id, True

        for attempt in range(REGISTER_ATTEMPTS):
            try:
                version_id, created = self.db.transact(change)
                break
            except IntegrityError:  # a concurrent registration took the number or the content: look again
                if attempt + 1 == REGISTER_ATTEMPTS:
                    raise Conflict(f"{name}: too many registrations at once; try again") from None
        return Registered(self._version_by_id(version_id), created)

    def find_version(self, name: str, content_hash: str) -> ModelVersion | None:
        """The version of `name` whose package has `content_hash`, if any (None also for an unknown model)."""
        with self.db.read() as conn:
            version_id = conn.execute(
                select(t.model_versions.c.version_id)
                .join(t.registered_models, t.registered_models.c.model_id == t.model_versions.c.model_id)
                .where(t.registered_models.c.name == name, t.model_versions.c.content_hash == content_hash)
            ).scalar()
            return self._version_by_id(version_id, conn) if version_id is not None else None

    def get_version(self, ref: ModelRef | str) -> ModelVersion:
        """The version `ref` names (NAME: the latest; NAME@vN; NAME@ALIAS); `NotFound` with what exists."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self.db.read() as conn:
            model_id = self._model_id(conn, ref.name)
            query = select(t.model_versions.c.version_id).where(t.model_versions.c.model_id == model_id)
            if ref.version is not None:
                query = query.where(t.model_versions.c.version == ref.version)
            elif ref.alias is not None:
                query = select(t.model_aliases.c.version_id).where(
                    t.model_aliases.c.model_id == model_id, t.model_aliases.c.alias == ref.alias
                )
            else:
                query = query.order_by(t.model_versions.c.version.desc()).limit(1)
            version_id = conn.execute(query).scalar()
            if version_id is None:
                raise NotFound(self._missing(conn, model_id, ref))
        return self._version_by_id(version_id)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, newest first."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, name)
            ids = conn.execute(
                select(t.model_versions.c.version_id)
                .where(t.model_versions.c.model_id == model_id)
                .order_by(t.model_versions.c.version.desc())
            ).scalars()
            return [self._version_by_id(i, conn) for i in ids]

    def versions_from_runs(self, run_ids: Sequence[str]) -> list[ModelVersion]:
        """The versions registered from these runs or from their child runs (a pipeline's train step, whose
        lineage names the datasets its pipeline run read), newest first: data lineage read backwards."""
        if not run_ids:
            return []
        mv, r = t.model_versions.c, t.runs.c
        children = select(r.run_id).where(r.parent_run_id.in_(list(run_ids)))
        with self.db.read() as conn:
            query = (
                select(mv.version_id)
                .where(mv.run_id.in_(list(run_ids)) | mv.run_id.in_(children))
                .order_by(mv.created_time.desc(), mv.version.desc())
            )
            ids = list(conn.execute(query).scalars())
            return [self._version_by_id(i, conn) for i in ids]

    def set_version_tags(self, ref: ModelRef | str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of a version."""
        version = self.get_version(ref)

        def change(conn: Connection) -> None:
            keys = list(tags)
            conn.execute(
                delete(t.model_version_tags).where(
                    t.model_version_tags.c.version_id == version.version_id,
                    t.model_version_tags.c.key.in_(keys),
                )
            )
            conn.execute(
                t.model_version_tags.insert(),
                [{"version_id": version.version_id, "key": k, "value": v} for k, v in tags.items()],
            )

        if tags:
            self.db.transact(change)

    # -- models ---------------------------------------------------------------------------------------------

    def version_by_id(self, version_id: str) -> ModelVersion:
        """The version with this id (LoopML's, not `name@vN`); `NotFound` otherwise."""
        with self.db.read() as conn:
            if (
                conn.execute(
                    select(t.model_versions.c.version_id).where(t.model_versions.c.version_id == version_id)
                ).first()
                is None
            ):
                raise NotFound(f"no model version with id {version_id!r}")
            return self._version_by_id(version_id, conn)

    def mark_trusted(self, ref: ModelRef | str, user: str | None) -> ModelVersion:
        """Record that `user` trusts the code that loading this version runs (its pickle, its Python class):
        serving, batch scoring and the gates load it from now on. Marking it again keeps the first mark."""
        version = self.get_version(ref)
        if version.trusted_by is None:
            self.db.transact(
                lambda conn: conn.execute(
                    update(t.model_versions)
                    .where(t.model_versions.c.version_id == version.version_id)
                    .values(trusted_by=user or "unknown", trusted_time=now_ms())
                )
            )
        return self._version_by_id(version.version_id)

    def create_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        """A registered model without versions yet; `Conflict` when the name is taken."""
        from loopml.tracking.values import check_name

        if ModelRef.parse(check_name("model", name)).name != name:
            raise InvalidInput(f"not a model name: {name!r} (no leading or trailing spaces, no '@')")

        def change(conn: Connection) -> str:
            if conn.execute(
                select(t.registered_models.c.model_id).where(t.registered_models.c.name == name)
            ).first():
                raise Conflict(f"a registered model named {name!r} already exists")
            now = now_ms()
            model_id = self._model_id(conn, name, create=True, now=now)
            if description is not None:
                conn.execute(
                    update(t.registered_models)
                    .where(t.registered_models.c.model_id == model_id)
                    .values(description=description)
                )
            if tags:
                conn.execute(
                    t.model_tags.insert(),
                    [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()],
                )
            return model_id

        try:
            model_id = self.db.transact(change)
        except IntegrityError:  # a concurrent create of the same name
            raise Conflict(f"a registered model named {name!r} already exists") from None
        with self.db.read() as conn:
            return self._model(conn, model_id)

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its tags, aliases and latest version number."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, name)
            return self._model(conn, model_id)

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        with self.db.read() as conn:
            ids = conn.execute(
                select(t.registered_models.c.model_id).order_by(t.registered_models.c.name)
            ).scalars()
            return [self._model(conn, i) for i in ids]

    def update_model(self, name: str, *, description: str | None = None, owner: str | None = None) -> None:
        """Change a model's description or owner (None leaves a field as it is)."""
        values = {k: v for k, v in {"description": description, "owner": owner}.items() if v is not None}

        def change(conn: Connection) -> None:
            model_id = self._model_id(conn, name)
            conn.execute(
                update(t.registered_models)
                .where(t.registered_models.c.model_id == model_id)
                .values(**values, updated_time=now_ms())
            )

        if values:
            self.db.transact(change)

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of a registered model."""

        def change(conn: Connection) -> None:
            model_id = self._model_id(conn, name)
            conn.execute(
                delete(t.model_tags).where(
                    t.model_tags.c.model_id == model_id, t.model_tags.c.key.in_(list(tags))
                )
            )
            conn.execute(
                t.model_tags.insert(), [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
            )

        if tags:
            self.db.transact(change)

    # -- aliases and their audit trail -----------------------------------------------------------------------

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        expected_from: int | None = None,
        check_from: bool = False,
        forced: bool = False,
        reason: str | None = None,
        gates: Sequence[Mapping[str, Any]] | None = None,
        user: str | None = None,
        guard: Callable[[Connection], None] | None = None,
    ) -> AliasEvent:
        """Point `alias` at `version` (None removes it) and append the audit event, in one transaction.

        `check_from` makes the move conditional on the alias still being at `expected_from` (None: unset): if another
        writer moved the alias since the caller looked (e.g. while gates ran), `Conflict` and nothing changes.
        `guard` runs first in the same transaction (the automation controller's lease check and its own record):
        if it raises, nothing changes.
        """
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or _VERSION_LIKE.fullmatch(alias):
            raise InvalidInput(
                f"not an alias name: {alias!r} (letters, digits, _ . -, starting with a letter or _; "
                "not 'latest' or v<number>, which name versions)"
            )
        ModelRef.parse(f"{name}@{alias}")  # the name must be valid too
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise InvalidInput(f"a version is a positive integer (e.g. 3), got {version!r:.60}")

        def change(conn: Connection) -> AliasEvent:
            if guard is not None:
                guard(conn)
            model_id = self._model_id(conn, name)
            current = self._alias_version(conn, model_id, alias)
            if check_from and current != expected_from:
                raise Conflict(
                    f"{name}@{alias} moved to v{current} while this change was prepared (expected "
                    f"{'v' + str(expected_from) if expected_from else 'no version'}); look again and retry"
                )
            now = now_ms()
            conn.execute(
                delete(t.model_aliases).where(
                    t.model_aliases.c.model_id == model_id, t.model_aliases.c.alias == alias
                )
            )
            if version is not None:
                version_id = conn.execute(
                    select(t.model_versions.c.version_id).where(
                        t.model_versions.c.model_id == model_id, t.model_versions.c.version == version
                    )
                ).scalar()
                if version_id is None:
                    raise NotFound(self._missing(conn, model_id, ModelRef(name, version)))
                conn.execute(
                    t.model_aliases.insert(),
                    {"model_id": model_id, "alias": alias, "version_id": version_id, "updated_time": now},
                )
            event = AliasEvent(
                name=name,
                alias=alias,
                from_version=current,
                to_version=version,
                outcome="moved" if version is not None else "removed",
                forced=forced,
                time=now,
                reason=reason,
                gates=[dict(g) for g in gates] if gates is not None else None,
                user=user,
            )
            self._append_event(conn, model_id, event)
            return event

        return self.db.transact(change)

    def record_refusal(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str,
        gates: Sequence[Mapping[str, Any]],
        user: str | None = None,
        guard: Callable[[Connection], None] | None = None,
    ) -> AliasEvent:
        """Append a refused promotion to the audit trail (the alias does not move); `guard` as in `move_alias`."""

        def change(conn: Connection) -> AliasEvent:
            if guard is not None:
                guard(conn)
            model_id = self._model_id(conn, name)
            event = AliasEvent(
                name=name,
                alias=alias,
                from_version=self._alias_version(conn, model_id, alias),
                to_version=version,
                outcome="refused",
                forced=False,
                time=now_ms(),
                reason=reason,
                gates=[dict(g) for g in gates],
                user=user,
            )
            self._append_event(conn, model_id, event)
            return event

        return self.db.transact(change)

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """The alias events of `name` (of one alias, if given), oldest first."""
        with self.db.read() as conn:
            model_id = self._model_id(conn, name)
            query = select(t.alias_events).where(t.alias_events.c.model_id == model_id)
            if alias is not None:
                query = query.where(t.alias_events.c.alias == alias)
            rows = conn.execute(query.order_by(t.alias_events.c.event_id)).all()
        return [_event_from_row(name, r) for r in rows]

    # -- helpers ----------------------------------------------------------------------------------------------

    def _model_id(self, conn: Connection, name: str, *, create: bool = False, now: int = 0) -> str:
        model_id = conn.execute(
            select(t.registered_models.c.model_id).where(t.registered_models.c.name == name)
        ).scalar()
        if model_id is not None:
            return str(model_id)
        if not create:
            known = conn.execute(
                select(t.registered_models.c.name).order_by(t.registered_models.c.name)
            ).scalars()
            names = ", ".join(list(known)[:20]) or "(none yet)"
            raise NotFound(f"no registered model {name!r}; registered models: {names}")
        model_id = new_id()
        conn.execute(
            t.registered_models.insert(),
            {"model_id": model_id, "name": name, "created_time": now, "updated_time": now},
        )
        return model_id

    def _alias_version(self, conn: Connection, model_id: str, alias: str) -> int | None:
        return conn.execute(
            select(t.model_versions.c.version)
            .join(t.model_aliases, t.model_aliases.c.version_id == t.model_versions.c.version_id)
            .where(t.model_aliases.c.model_id == model_id, t.model_aliases.c.alias == alias)
        ).scalar()

    def _append_event(self, conn: Connection, model_id: str, event: AliasEvent) -> None:
        conn.execute(
            t.alias_events.insert(),
            {
                "model_id": model_id,
                "alias": event.alias,
                "from_version": event.from_version,
                "to_version": event.to_version,
                "outcome": event.outcome,
                "forced": event.forced,
                "reason": event.reason,
                "gates_json": json.dumps(event.gates, sort_keys=True) if event.gates is not None else None,
                "user_name": event.user,
                "time": event.time,
            },
        )

    def _missing(self, conn: Connection, model_id: str, ref: ModelRef) -> str:
        versions = list(
            conn.execute(
                select(t.model_versions.c.version).where(t.model_versions.c.model_id == model_id)
            ).scalars()
        )
        aliases = list(
            conn.execute(
                select(t.model_aliases.c.alias).where(t.model_aliases.c.model_id == model_id)
            ).scalars()
        )
        have = f"versions v1..v{max(versions)}" if versions else "no versions"
        names = f"; aliases: {', '.join(sorted(aliases))}" if aliases else "; no aliases"
        return f"model {ref.name!r} has no {str(ref).partition('@')[2] or 'version'} ({have}{names})"

    def _model(self, conn: Connection, model_id: str) -> RegisteredModel:
        row = conn.execute(
            select(t.registered_models).where(t.registered_models.c.model_id == model_id)
        ).one()
        tags = dict(
            conn.execute(
                select(t.model_tags.c.key, t.model_tags.c.value).where(t.model_tags.c.model_id == model_id)
            ).all()
        )
        aliases = dict(
            conn.execute(
                select(t.model_aliases.c.alias, t.model_versions.c.version)
                .join(t.model_versions, t.model_versions.c.version_id == t.model_aliases.c.version_id)
                .where(t.model_aliases.c.model_id == model_id)
            ).all()
        )
        latest = conn.execute(
            select(func.max(t.model_versions.c.version)).where(t.model_versions.c.model_id == model_id)
        ).scalar()
        return RegisteredModel(
            model_id=row.model_id,
            name=row.name,
            created_time=row.created_time,
            updated_time=row.updated_time,
            description=row.description,
            owner=row.owner,
            tags=tags,
            aliases=aliases,
            latest_version=latest,
        )

    def _version_by_id(self, version_id: str, conn: Connection | None = None) -> ModelVersion:
        if conn is None:
            with self.db.read() as fresh:
                return self._version_by_id(version_id, fresh)
        row = conn.execute(
            select(t.model_versions, t.registered_models.c.name)
            .join(t.registered_models, t.registered_models.c.model_id == t.model_versions.c.model_id)
            .where(t.model_versions.c.version_id == version_id)
        ).one()
        tags = dict(
            conn.execute(
                select(t.model_version_tags.c.key, t.model_version_tags.c.value).where(
                    t.model_version_tags.c.version_id == version_id
                )
            ).all()
        )
        aliases = tuple(
            sorted(
                conn.execute(
                    select(t.model_aliases.c.alias).where(t.model_aliases.c.version_id == version_id)
                ).scalars()
            )
        )
        return _version_from_row(row, tags, aliases)


def _version_from_row(row: Row[Any], tags: dict[str, str], aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        version_id=row.version_id,
        flavor=row.flavor,
        content_hash=row.content_hash,
        package_digest=row.package_digest,
        created_time=row.created_time,
        run_id=row.run_id,
        signature=json.loads(row.signature_json) if row.signature_json else None,
        metrics=json.loads(row.metrics_json or "{}"),
        description=row.description,
        created_by=row.created_by,
        tags=tags,
        aliases=aliases,
        trusted_by=row.trusted_by,
        trusted_time=row.trusted_time,
        source_uri=row.source_uri,
        logged_model_id=row.logged_model_id,
    )


def _event_from_row(name: str, row: Row[Any]) -> AliasEvent:
    return AliasEvent(
        name=name,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        outcome=row.outcome,
        forced=bool(row.forced),
        time=row.time,
        reason=row.reason,
        gates=json.loads(row.gates_json) if row.gates_json else None,
        user=row.user_name,
    )
