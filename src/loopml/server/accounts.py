"""Team server accounts: users (people and services), their bearer tokens, and roles per workspace or model.

    store = AccountStore(db)
    token = store.create_admin("ana")                    # the first admin: `loopml server create-admin --name ana`
    who = store.authenticate(token)                      # Principal; Unauthenticated otherwise
    who.require("write", workspace="default", model="fraud")   # Forbidden without an editor role there

A token is `lml_<token id>_<secret>`: 256 random bits of secret, of which only a SHA-256 is stored (a fast hash
is enough for random secrets; a leaked table gives no working token), compared in constant time. There is no
default account and no password: the first admin comes from the server's own shell. Roles are ordered:
reader (read) < editor (read, write) < admin (read, write, manage accounts); a role on a model adds to the
workspace role for that model only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from loopml.core.clock import now_ms
from loopml.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from loopml.core.ids import new_id
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database

ROLES = ("reader", "editor", "admin")
ACTIONS = {"read": "reader", "write": "editor", "admin": "admin"}  # the least role each action needs
KINDS = ("person", "service")
SESSION_PREFIX = "ui-session:"  # the name of a UI session token: the prefix, then the token it came from
EVERY_WORKSPACE = "*"  # a role bound here holds in every workspace
DEFAULT_WORKSPACE = t.DEFAULT_WORKSPACE
_TOKEN = re.compile(r"^lml_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and the roles they hold: {(workspace, model or None): role}."""

    user_id: str
    name: str
    kind: str
    token_id: str
    roles: dict[tuple[str, str | None], str] = field(default_factory=dict)
    expires_time: int | None = None  # of the token the request came with

    def role(self, workspace: str, model: str | None = None) -> str | None:
        """The strongest role on `model` in `workspace` (its own, the workspace's, or one on every workspace),
        or None."""
        found = [self.roles.get((workspace, None)), self.roles.get((EVERY_WORKSPACE, None))]
        if model is not None:
            found.append(self.roles.get((workspace, model)))
        ranked = [r for r in found if r is not None]
        return max(ranked, key=ROLES.index) if ranked else None

    def can(self, action: str, workspace: str = DEFAULT_WORKSPACE, model: str | None = None) -> bool:
        """Whether this principal may `action` (read | write | admin) there."""
        if action not in ACTIONS:
            raise InvalidInput(f"action is one of {', '.join(ACTIONS)}, got {action!r}")
        held = self.role(workspace, model)
        return held is not None and ROLES.index(held) >= ROLES.index(ACTIONS[action])

    def require(self, action: str, workspace: str = DEFAULT_WORKSPACE, model: str | None = None) -> None:
        """`Forbidden`, naming the role needed, unless `can(action, ...)`."""
        if not self.can(action, workspace, model):
            where = f"workspace {workspace!r}" + (f", model {model!r}" if model else "")
            raise Forbidden(f"{self.name} may not {action} in {where}: that needs the {ACTIONS[action]} role")


class AccountStore:
    """Users, tokens and role bindings in the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_user(self, name: str, *, kind: str = "person", created_by: str | None = None) -> str:
        """A new user; returns its id. `Conflict` when the name is taken."""
        _check_name(name)
        if kind not in KINDS:
            raise InvalidInput(f"a user is a {' or a '.join(KINDS)}, got {kind!r}")
        user_id = new_id()

        def change(conn: Connection) -> None:
            conn.execute(
                t.users.insert(),
                {
                    "user_id": user_id,
                    "name": name,
                    "kind": kind,
                    "created_time": now_ms(),
                    "created_by": created_by,
                },
            )

        try:
            self.db.transact(change)
        except IntegrityError:
            raise Conflict(f"a user named {name!r} exists already") from None
        return user_id

    def create_admin(self, name: str) -> str:
        """A person with the admin role on every workspace (the server's admin), and a token for them (printed
        once)."""
        user_id = self.create_user(name, kind="person", created_by="create-admin")
        self.grant(name, "admin", workspace=EVERY_WORKSPACE)
        return self.issue_token(user_id, "create-admin")

    def issue_token(self, user_id: str, name: str, *, expires_ms: int | None = None) -> str:
        """A new bearer token for `user_id`; the only time its secret is seen."""
        token_id, secret = new_id(), secrets.token_urlsafe(32)

        def change(conn: Connection) -> None:
            if conn.execute(select(t.users.c.user_id).where(t.users.c.user_id == user_id)).first() is None:
                raise NotFound(f"no user with id {user_id!r}")
            conn.execute(
                t.api_tokens.insert(),
                {
                    "token_id": token_id,
                    "user_id": user_id,
                    "name": name,
                    "secret_hash": _digest(secret),
                    "created_time": now_ms(),
                    "expires_time": expires_ms,
                },
            )

        self.db.transact(change)
        return f"lml_{token_id}_{secret}"

    def token_for(self, user: str, name: str, *, expires_ms: int | None = None) -> str:
        """A new token for the user named `user`."""
        return self.issue_token(self.user_id(user), name, expires_ms=expires_ms)

    def revoke(self, token_id: str) -> None:
        """Revoke a token (by its id, the part after `lml_`); later requests with it are refused."""

        def change(conn: Connection) -> None:
            done = conn.execute(
                update(t.api_tokens)
                .where(t.api_tokens.c.token_id == token_id, t.api_tokens.c.revoked_time.is_(None))
                .values(revoked_time=now_ms())
            )
            if done.rowcount == 0:
                raise NotFound(f"no active token {token_id!r}")

        self.db.transact(change)

    def grant(
        self, user: str, role: str, *, workspace: str = DEFAULT_WORKSPACE, model: str | None = None
    ) -> None:
        """Give the user named `user` `role` in `workspace` (or on one `model` of it), replacing any role they
        held exactly there."""
        if role not in ROLES:
            raise InvalidInput(f"a role is one of {', '.join(ROLES)}, got {role!r}")
        user_id = self.user_id(user)
        b = t.role_bindings.c

        def change(conn: Connection) -> None:
            where = [b.user_id == user_id, b.workspace_id == workspace]
            where.append(b.model.is_(None) if model is None else b.model == model)
            conn.execute(t.role_bindings.delete().where(*where))
            conn.execute(
                t.role_bindings.insert(),
                {
                    "user_id": user_id,
                    "workspace_id": workspace,
                    "model": model,
                    "role": role,
                    "created_time": now_ms(),
                },
            )

        self.db.transact(change)

    def user_id(self, name: str) -> str:
        """The id of the user named `name`; `NotFound` otherwise."""
        with self.db.read() as conn:
            found = conn.execute(select(t.users.c.user_id).where(t.users.c.name == name)).scalar()
        if found is None:
            raise NotFound(f"no user named {name!r}")
        return str(found)

    def start_session(self, principal: Principal, hours: float) -> str:
        """A UI session token for a principal who signed in with a token of theirs: it names that token
        (`ui-session:<id>`), lives `hours` at most and never past that token's expiry, and dies with it."""
        ends = now_ms() + int(hours * 3_600_000)
        if principal.expires_time is not None:
            ends = min(ends, principal.expires_time)
        return self.issue_token(principal.user_id, SESSION_PREFIX + principal.token_id, expires_ms=ends)

    def authenticate(self, token: str | None, *, now: int | None = None, session: bool = False) -> Principal:
        """The principal a bearer token stands for; `Unauthenticated` (saying nothing about which part was
        wrong) for a missing, malformed, unknown, expired or revoked token, or a disabled user. A UI session
        token counts only where `session` is asked for (the UI's pages), and only while the token it was
        started from is valid too."""
        refused = Unauthenticated("a valid bearer token is required (Authorization: Bearer lml_...)")
        match = _TOKEN.match(token or "")
        if match is None:
            raise refused
        token_id, secret = match.groups()
        at = now_ms() if now is None else now
        k, u = t.api_tokens.c, t.users.c
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    k.secret_hash,
                    k.expires_time,
                    k.revoked_time,
                    k.name.label("token_name"),
                    u.user_id,
                    u.name,
                    u.kind,
                    u.disabled_time,
                )
                .join(t.users, u.user_id == k.user_id)
                .where(k.token_id == token_id)
            ).first()
            # Compared even when the row is missing, so timing does not tell an unknown id from a bad secret.
            stored = row.secret_hash if row is not None else "0" * 64
            if not hmac.compare_digest(stored, _digest(secret)) or row is None:
                raise refused
            if row.revoked_time is not None or row.disabled_time is not None:
                raise refused
            if row.expires_time is not None and row.expires_time <= at:
                raise refused
            if str(row.token_name).startswith(SESSION_PREFIX):
                parent = str(row.token_name)[len(SESSION_PREFIX) :]
                if not session or not self._active(conn, parent, at):
                    raise refused
            b = t.role_bindings.c
            roles = {
                (workspace, model): role
                for workspace, model, role in conn.execute(
                    select(b.workspace_id, b.model, b.role).where(b.user_id == row.user_id)
                )
            }
        return Principal(row.user_id, row.name, row.kind, token_id, roles, row.expires_time)

    @staticmethod
    def _active(conn: Connection, token_id: str, at: int) -> bool:
        k = t.api_tokens.c
        found = conn.execute(select(k.expires_time, k.revoked_time).where(k.token_id == token_id)).first()
        return (
            found is not None
            and found.revoked_time is None
            and (found.expires_time is None or found.expires_time > at)
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            "a user name is 1-128 characters of letters, digits, . _ @ -, starting with a letter or digit; "
            f"got {name!r:.60}"
        )
