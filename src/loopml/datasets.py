"""`loopml.datasets`: version data, read it back, and record in the active run what it read.

    v = loopml.datasets.add("transactions", "data/transactions.csv")   # or a DataFrame, a folder, a glob
    with loopml.start_run():
        frame = loopml.datasets.load("transactions@v3")                # recorded as an input of the run

This module joins two domains (data versioning and tracking), so it sits above both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from loopml.core.errors import InvalidInput
from loopml.core.settings import load_settings
from loopml.data import worktree
from loopml.data.pointers import SUFFIX, find_pointers, read_pointer, write_pointer
from loopml.data.records import Added, Dataset, DatasetVersion, VersionRef
from loopml.data.statcache import StatCache
from loopml.data.worktree import WorkStatus

if TYPE_CHECKING:
    from loopml.data.catalog import DataCatalog
    from loopml.storage.blobs.store import BlobStore
    from loopml.storage.blobs.tree import Tree
    from loopml.tracking.tracker import Tracker

# The catalog and tracking modules (SQLAlchemy, numpy, fsspec) are imported inside the functions that need
# them: `loopml data status` on an unchanged folder answers from a pointer file and the stat cache alone.

__all__ = [
    "Added",
    "Dataset",
    "DatasetVersion",
    "WorkStatus",
    "add",
    "catalog",
    "checkout",
    "datasets",
    "get",
    "load",
    "load_version",
    "status",
    "versions",
]


def catalog(tracker: Tracker | None = None) -> DataCatalog:
    """The data catalog of the project (the working directory's unless a tracker is given).

    Against a team server (`LOOPML_TRACKING_URI`) the version records and blobs are the server's; files are
    still hashed and profiled here, and only the blobs the server lacks are uploaded.
    """
    from loopml.data.catalog import DataCatalog
    from loopml.tracking.tracker import default_tracker

    opened = tracker or default_tracker()
    if not opened.remote:
        return DataCatalog(opened.stores)
    from loopml.data.remote_store import RemoteDatasetStore
    from loopml.storage.metadata.database import Database
    from loopml.storage.stores import Stores
    from loopml.tracking.remote import NotServed, RemoteTrackingStore

    http = cast(RemoteTrackingStore, opened.store).http
    # The local settings (loopml.toml expectations, the stat cache, the download cache) and the server's blobs;
    # no local database: anything that would reach for one says it is not served.
    served = Stores(
        settings=opened.settings,
        db=cast(Database, NotServed(http.uri, "the local metadata database")),
        blobs=opened.blobs,
    )
    return DataCatalog(served, RemoteDatasetStore(http))


def add(
    name: str,
    source: Any,
    *,
    message: str | None = None,
    force: bool = False,
    no_copy: bool = False,
    tracker: Tracker | None = None,
) -> Added:
    """A new immutable version of `name` from a file, folder, glob pattern or DataFrame.

    Identical content adds no version: the existing one is returned with `created=False`.
    """
    from loopml.tracking.environment import git_state
    from loopml.tracking.tracker import default_tracker

    opened = tracker or default_tracker()
    git = git_state() if opened.settings.capture_git else None
    added = catalog(opened).add(
        name, source, message=message, git_commit=git.commit if git else None, force=force, no_copy=no_copy
    )
    if not no_copy and isinstance(source, str | os.PathLike) and Path(source).exists():
        data_path = Path(source).resolve()
        if git_state(data_path.parent).root is not None:  # inside a git repository: a committable pointer
            write_pointer(added.version, data_path)
    return added


def status(
    path: str | os.PathLike[str], ref: str | None = None, *, tracker: Tracker | None = None
) -> WorkStatus:
    """Whether the file or folder at `path` still matches `ref` (default: the version its pointer names)."""
    target = Path(path)
    if ref is None:
        pointer = read_pointer(_pointer_for(target))
        # The pointer names the version's digest: an unchanged folder is confirmed without the database.
        home = tracker.settings.home_dir if tracker is not None else load_settings().home_dir
        quick = worktree.quick_status(target, pointer.ref, pointer.digest, StatCache.in_home(home))
        if quick is not None:
            return quick
        ref = pointer.ref
    data = catalog(tracker)
    return worktree.status(data, target, data.get(ref), data.stat_cache)


def checkout(
    root: str | os.PathLike[str] = ".",
    *,
    remote: str | None = None,
    endpoint_url: str | None = None,
    tracker: Tracker | None = None,
) -> list[tuple[str, int, int]]:
    """Restore the data every pointer file under `root` names: [(ref, files written, files already right)].

    With `remote`, first fetch what the pointers need from it (as `dvc pull` does).
    """
    data = catalog(tracker)
    pointer_files = find_pointers(Path(root))
    if remote is not None and pointer_files:
        trees = [read_pointer(p).manifest for p in pointer_files]
        from loopml.data.remote import pull_trees

        pull_trees(data, remote, trees, endpoint_url=endpoint_url)
    done = []
    for pointer_file in pointer_files:
        pointer = read_pointer(pointer_file)
        written, kept = worktree.checkout(data, pointer, pointer_file.parent, data.stat_cache)
        done.append((pointer.ref, written, kept))
    return done


def _pointer_for(path: Path) -> Path:
    folder = path.resolve().parent
    for pointer_file in sorted(folder.glob(f"*{SUFFIX}")):
        if read_pointer(pointer_file).path == path.name:
            return pointer_file
    raise InvalidInput(f"no pointer file names {str(path)!r}: give the version (NAME@vN) to compare with")


def get(ref: str, destination: str | os.PathLike[str], *, tracker: Tracker | None = None) -> list[Path]:
    """Restore the files of `NAME@vN` (default: newest) under `destination`."""
    return catalog(tracker).restore(ref, destination)


def versions(name: str, *, tracker: Tracker | None = None) -> list[DatasetVersion]:
    """Every version of a dataset, newest first."""
    return catalog(tracker).versions(name)


def datasets(*, tracker: Tracker | None = None) -> list[Dataset]:
    """Every dataset of the project."""
    return catalog(tracker).datasets()


def load(ref: str, *, context: str = "training", tracker: Tracker | None = None) -> Any:
    """A version's content: a pandas DataFrame for tables, else the folder its files were restored to.

    Inside a run, the version is recorded as an input of the run (lineage: run -> dataset version).
    """
    from loopml.tracking.tracker import default_tracker

    opened = tracker or default_tracker()
    return load_version(catalog(opened).get(VersionRef.parse(ref)), context=context, tracker=opened)


def load_version(
    version: DatasetVersion, *, context: str = "training", tracker: Tracker | None = None
) -> Any:
    """`load` of a version already looked up. It reads only the blob store, so a step on a cluster worker
    (which cannot reach the catalog) loads the versions its pipeline resolved (`DatasetRef`) itself."""
    from loopml.data.catalog import table_file
    from loopml.storage.blobs.tree import get_tree
    from loopml.tracking.fluent import active_run
    from loopml.tracking.journal import JournalTracker
    from loopml.tracking.tracker import default_tracker

    opened = tracker or default_tracker()
    on_worker = isinstance(opened, JournalTracker)
    cache = _worker_cache() if on_worker else opened.settings.home_dir / "cache"
    if version.kind == "external":  # tracked in place: the data is read where it lives
        content: Any = version.source
        if on_worker and not Path(str(content)).exists():
            raise InvalidInput(
                f"{version.ref} was tracked in place at {content}, which this cluster worker cannot see: "
                "add it with a copy (without --no-copy) to read it on other machines"
            )
    elif version.kind == "table":
        content = _read_table(table_file(opened.blobs, version, cache))
    else:
        content = cache / version.digest
        if not content.is_dir():
            _restore_whole(opened.blobs, get_tree(opened.blobs, version.manifest_digest), content)
    run = active_run()
    if run is not None:
        run.log_input(version.name, f"v{version.version}", digest=version.digest, context=context)
    return content


def _worker_cache() -> Path:
    """Where a cluster worker keeps the versions it read: its own temporary folder, private to its user
    (a worker may be on another machine, where the project's folder does not exist)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"loopml-cache-{uid if uid is not None else os.getlogin()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if uid is not None and folder.stat().st_uid != uid:
        raise InvalidInput(f"{folder} belongs to another user: remove it, or set TMPDIR to a folder of yours")
    return folder


def _restore_whole(blobs: BlobStore, tree: Tree, target: Path) -> None:
    """Restore into a sibling, then rename it into place: a restore cut short (a killed worker) or running
    beside another one never leaves a folder that looks complete but is not."""
    import shutil
    import uuid

    from loopml.data import files

    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        files.restore(blobs, tree, partial)
        partial.mkdir(parents=True, exist_ok=True)  # an empty folder version writes no file
        try:
            partial.rename(target)
        except OSError:
            if not target.is_dir():  # not another restore that won the race
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _read_table(path: Path) -> Any:
    import pyarrow as pa

    from loopml.data.tables import batches

    return pa.Table.from_batches(list(batches(path))).to_pandas()
