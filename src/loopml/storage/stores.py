"""The stores of one LoopML project, opened together from its settings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from loopml.core.errors import InvalidInput, StoreError
from loopml.core.settings import Settings
from loopml.storage.blobs.store import BlobStore
from loopml.storage.endpoints import storage_options_for
from loopml.storage.metadata.database import Database, sqlite_path


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
        if settings.uses_default_home and not home.is_dir():
            try:
                home.mkdir(parents=True, exist_ok=True)
                # The store is data, not code: keep it out of the project's git status and commits.
                (home / ".gitignore").write_text("# created by LoopML\n*\n")
            except OSError as error:
                raise StoreError(f"cannot create the store folder {home}: {error.strerror}") from None
            print(f"loopml: created a new store in {_shown(home)}", file=sys.stderr)
        if sqlite_path(settings.metadata_url) is None and settings.metadata_url.startswith("sqlite"):
            raise InvalidInput(
                "an in-memory SQLite database cannot be shared with the metric flush thread: use a file"
            )
        db = Database(settings.metadata_url, busy_timeout_s=settings.busy_timeout_s)
        try:
            # An S3 artifact store on a custom endpoint (MinIO, rclone, Ceph) gets it from LOOPML_S3_ENDPOINT_URL.
            blobs = BlobStore(settings.blob_url, **storage_options_for(settings.blob_url))
        except BaseException:
            db.dispose()
            raise
        return cls(settings=settings, db=db, blobs=blobs)

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


def _shown(path: os.PathLike[str]) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return os.fspath(path)
