"""Small helpers shared by the automation tests."""

from __future__ import annotations

from typing import Any

from loopml.registry.store import RegistryStore


def champion(project: Any) -> int | None:
    """The version the toy model's champion alias points at."""
    return RegistryStore(project.tracker.stores.db).get_model("toy").aliases.get("champion")
