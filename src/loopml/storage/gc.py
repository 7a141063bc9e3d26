"""Garbage collection of blobs: everything no record of any domain refers to, past a grace period.

It lives in the storage layer because it must see every table that names a blob; a domain that stores
blobs adds its columns here (one place, so no domain can be forgotten).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select

from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.tree import get_tree
from loopml.storage.metadata import schema as t
from loopml.storage.metadata.database import Database


def referenced_digests(db: Database, blobs: BlobStore, *, ignoring_runs: Sequence[str] = ()) -> set[str]:
    """Every blob a record refers to, with the files listed by referenced trees (`ignoring_runs`: as if
    those runs were already purged, for a dry run)."""
    with db.read() as conn:
        artifacts = select(t.artifacts.c.digest).distinct()
        if ignoring_runs:
            artifacts = artifacts.where(t.artifacts.c.run_id.not_in(list(ignoring_runs)))
        keep = set(conn.execute(artifacts).scalars())
        trees = set(conn.execute(select(t.dataset_versions.c.manifest_digest).distinct()).scalars())
        trees.update(conn.execute(select(t.model_versions.c.package_digest).distinct()).scalars())
        profiles = conn.execute(select(t.dataset_versions.c.profile_digest).distinct()).scalars()
        keep.update(p for p in profiles if p)
        # Prediction log segments: `loopml predictions prune` deletes their rows and leaves the files to gc.
        keep.update(conn.execute(select(t.prediction_segments.c.blob_digest).distinct()).scalars())
        window_profiles = conn.execute(select(t.monitor_windows.c.profile_digest).distinct()).scalars()
        keep.update(p for p in window_profiles if p)
    for tree in trees:
        keep.add(tree)
        if blobs.exists(tree):
            keep.update(entry.digest for entry in get_tree(blobs, tree).entries)
    return keep


INCOMING_GRACE_S = 86_400.0


def sweep(blobs: BlobStore, keep: set[str], *, grace_s: float = 3600.0, dry_run: bool = False) -> list[str]:
    """Remove (or with `dry_run` only list) blobs not in `keep` and older than `grace_s`; returns them.

    Young blobs are kept: a writer stores a blob before the record that refers to it. A pack goes only when
    none of its objects is referenced (a pack without an index, left by a crash, has none); a partly used
    pack is kept whole until a repack exists.
    """
    cutoff = time.time() - grace_s
    loose = [d for d in blobs.loose_digests() if d not in keep and blobs.modified(d) <= cutoff]
    dead_packs = [p for p in blobs.packs() if p.modified <= cutoff and keep.isdisjoint(p.objects)]
    if not dry_run:
        for digest in loose:
            blobs.delete(digest)
        for pack in dead_packs:
            blobs.delete_pack(pack.digest)
        # Temporary files of writes that never finished (a killed writer, an abandoned presigned upload):
        # a day at least, so no upload still under way is cut.
        blobs.drop_incoming(older_than=time.time() - max(grace_s, INCOMING_GRACE_S))
    return loose + [d for pack in dead_packs for d in pack.objects]
