"""Workspaces: one server, several teams, each with its own stores, policies and roles.

A workspace other than `default` is a folder `<server home>/workspaces/NAME/`: its `workspace.json` names its
metadata database and blob store (by default a SQLite file and a blob folder inside it; a PostgreSQL database and
an S3 prefix for real use), and its `loopml.toml` holds that team's gates, monitoring, KPI and automation
policies, which the server applies for every client of the workspace. Clients address it with
`LOOPML_TRACKING_URI=http://server:5000/w/NAME`; the API under that prefix is the same as at the root.

Why separate stores rather than a `workspace_id` filter in every query: isolation then does not depend on
every query remembering the filter, a team's data can be moved or deleted as a whole, and a workspace's
database can live elsewhere. (Every table keeps its `workspace_id` column, `default` everywhere.)
Users, tokens and role bindings stay in the server's own database: roles name the workspace they apply to.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from loopml.core.settings import Settings
    from loopml.server.app import ServerOptions
    from loopml.tracking.tracker import Tracker

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
RECORD = "workspace.json"


def folder_of(settings: Settings, name: str) -> Path:
    """The folder of workspace `name` (checked to be a plain name: it becomes a path)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == "default":
        raise InvalidInput(
            f"a workspace name is 1-63 lower-case letters, digits and dashes (not 'default'), got {name!r}"
        )
    return settings.home_dir / "workspaces" / name


def create_workspace(
    settings: Settings, name: str, *, database_url: str | None = None, artifact_url: str | None = None
) -> Path:
    """Make workspace `name`: its folder, its record and its migrated database; returns the folder."""
    from loopml.storage.metadata.database import Database

    folder = folder_of(settings, name)
    if (folder / RECORD).exists():
        raise Conflict(f"workspace {name!r} exists already")
    home = folder / ".loopml"
    record = {
        "database_url": database_url or f"sqlite:///{home / 'loopml.db'}",
        "artifact_url": artifact_url or str(home / "blobs"),
    }
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitignore").write_text("# created by LoopML\n*\n")
    Database(record["database_url"], auto_migrate=True).dispose()
    temp = folder / f".{RECORD}.tmp"
    # Owner-only: a database URL may carry a password.
    with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as sink:
        json.dump(record, sink, indent=2)
    temp.replace(folder / RECORD)
    return folder


def list_workspaces(settings: Settings) -> list[str]:
    """The names of the server's workspaces besides `default`."""
    root = settings.home_dir / "workspaces"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if NAME.fullmatch(p.name) and (p / RECORD).is_file())


def open_workspace(settings: Settings, name: str) -> Tracker:
    """A tracker over workspace `name`'s stores (`NotFound` for an unknown one)."""
    from loopml.core.settings import load_settings
    from loopml.tracking.tracker import Tracker

    folder = folder_of(settings, name)
    try:
        record = json.loads((folder / RECORD).read_text())
    except FileNotFoundError:
        raise NotFound(f"no workspace {name!r} on this server") from None
    # Given explicitly, so the server's own LOOPML_DATABASE_URL / LOOPML_ARTIFACT_URL never leak into it.
    return Tracker(
        load_settings(
            project_dir=folder,
            home=folder / ".loopml",
            database_url=record["database_url"],
            artifact_url=record["artifact_url"],
            tracking_uri=None,
        )
    )


class WorkspaceApps:
    """The ASGI app mounted at `/w/{workspace}`: each workspace's API, opened on first use and kept."""

    def __init__(self, settings: Settings, options: ServerOptions) -> None:
        self.settings, self.options = settings, options
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = str(scope.get("path_params", {}).get("workspace", ""))
        try:
            app = self._app(name)
        except (InvalidInput, NotFound) as error:
            from loopml.server.app import error_response

            await error_response(error.http_status, error.code, error.message)(scope, receive, send)
            return
        await app(scope, receive, send)

    def _app(self, name: str) -> Any:
        with self._lock:
            app = self._apps.get(name)
            if app is None:
                from loopml.server.app import workspace_api

                app = self._apps[name] = workspace_api(open_workspace(self.settings, name), self.options)
            return app
