"""Lookups every domain needs on the shared tables, written once."""

from __future__ import annotations

from sqlalchemy import Connection, select

from loopml.core.errors import NotFound
from loopml.storage.metadata import schema as t


def model_id_of(conn: Connection, name: str) -> str:
    """The id of the registered model `name`; `NotFound` listing the registered ones."""
    found = conn.execute(
        select(t.registered_models.c.model_id).where(t.registered_models.c.name == name)
    ).scalar()
    if found is not None:
        return str(found)
    names = list(
        conn.execute(select(t.registered_models.c.name).order_by(t.registered_models.c.name)).scalars()
    )
    known = ", ".join(names[:20]) or "(none yet)"
    raise NotFound(f"no registered model {name!r}; registered models: {known}")
