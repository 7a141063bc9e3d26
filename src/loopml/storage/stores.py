"""The stores of one LoopML project, opened together from its settings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from loopml.core.settings import Settings
from loopml.storage.blobs.store import BlobStore
from loopml.storage.metadata.database import Database


@dataclass
class Stores:
    """The metadata database and the blob store of a project."""

    settings: Settings
    db: Database
    blobs: BlobStore

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        """Open (and for a local project on first use, create) the stores; a first creation is said on stderr."""
        home = settings.home_dir
        if settings.uses_default_home and not home.exists():
            home.mkdir(parents=True, exist_ok=True)
            print(f"loopml: created a new store in {_shown(home)}", file=sys.stderr)
        db = Database(settings.metadata_url, busy_timeout_s=settings.busy_timeout_s)
        return cls(settings=settings, db=db, blobs=BlobStore(settings.blob_url))

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


def _shown(path: os.PathLike[str]) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return os.fspath(path)
