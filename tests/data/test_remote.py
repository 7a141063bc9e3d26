"""Remotes: `copy_missing` between blob stores, push/pull of dataset versions to a folder and to a real S3 server.

The S3 server is `rclone serve s3` (tests/s3_server.py), started once per session on 127.0.0.1. Without
rclone the S3 tests are skipped, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml import datasets
from loopml.core.errors import InvalidInput, NotFound, RemoteError, StoreCorrupt, StoreError
from loopml.core.hashing import hash_bytes
from loopml.core.settings import load_settings
from loopml.data.remote import pull, push
from loopml.storage.blobs.store import BlobStore
from loopml.storage.blobs.transfer import copy_missing
from loopml.tracking.tracker import Tracker
from s3_server import S3Server

LOOPML = str(Path(sys.executable).parent / "loopml")


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def _add_data(tmp_path: Path) -> dict[str, bytes]:
    """images@v1 (20 small files, packed locally) and v2 (one file changed, one added), and a table."""
    files = {f"img/{i:02}.bin": os.urandom(200 + i) for i in range(20)} | {"big.bin": os.urandom(100_000)}
    datasets.add("images", _folder(tmp_path / "images", files))
    changed = {"img/00.bin": b"changed", "new.txt": b"only in v2"}
    datasets.add("images", _folder(tmp_path / "images", changed))
    frame = pd.DataFrame({"x": np.arange(500.0), "y": ["a", "b"] * 250})
    datasets.add("table", frame)
    return files | changed


def _needed(tracker: Tracker) -> set[str]:
    """Every object of every version, computed independently of the code under test."""
    data = datasets.catalog(tracker)
    needed: set[str] = set()
    for dataset in data.datasets():
        for version in data.versions(dataset.name):
            needed |= {version.manifest_digest, *(e.digest for e in data.tree(version).entries)}
            needed |= {version.profile_digest} if version.profile_digest else set()
    return needed


def _remote_files(root: Path) -> dict[str, bytes]:
    """Objects stored under a remote's folder, loose or packed, by digest (as stored: not verified)."""
    store = BlobStore(str(root))
    return {digest: store.get_bytes(digest) for digest in store.digests()}


@pytest.fixture
def second_project(sqlite_tracker: Tracker, tmp_path: Path) -> Iterator[Tracker]:
    """Another project sharing the first one's metadata database (as a team database would) but no blobs."""
    other = Tracker(
        load_settings(project_dir=tmp_path / "other", database_url=sqlite_tracker.settings.metadata_url)
    )
    try:
        yield other
    finally:
        other.close()


# -- copy_missing ------------------------------------------------------------------------------------


def test_copy_missing_copies_only_what_the_target_lacks(tmp_path: Path) -> None:
    source, target = BlobStore(str(tmp_path / "a")), BlobStore(str(tmp_path / "b"))
    blobs = [os.urandom(100 + i) for i in range(20)]
    digests = [source.put_bytes(b) for b in blobs]
    for data in blobs[:5]:
        target.put_bytes(data)
    calls: list[tuple[int, int]] = []
    report = copy_missing(
        source, target, [*digests, digests[7]], workers=4, progress=lambda *c: calls.append(c)
    )
    assert (report.copied, report.skipped, report.bytes) == (15, 5, sum(len(b) for b in blobs[5:]))
    assert calls[0] == (0, 15)
    assert calls[-1] == (15, 15)
    assert [done for done, _ in calls] == list(range(16))
    assert all(target.get_bytes(d, verify=True) == b for d, b in zip(digests, blobs, strict=True))
    again = copy_missing(source, target, digests, workers=1)
    assert (again.copied, again.skipped, again.bytes) == (0, 20, 0)


@pytest.mark.parametrize(
    ("digests", "workers", "match"),
    [
        (["abc"], 8, "not object digests"),
        ("a" * 64, 8, "not a single string"),
        ([], 0, "workers must be"),
        ([], True, "workers must be"),
    ],
)
def test_copy_missing_refuses_bad_input(tmp_path: Path, digests: list[str], workers: int, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        copy_missing(BlobStore(str(tmp_path / "a")), BlobStore(str(tmp_path / "b")), digests, workers=workers)


def test_copy_missing_of_an_object_the_source_lacks_is_not_found(tmp_path: Path) -> None:
    target = BlobStore(str(tmp_path / "b"))
    with pytest.raises(NotFound, match="a" * 64):
        copy_missing(BlobStore(str(tmp_path / "a")), target, ["a" * 64])
    assert list(target.digests()) == []


def test_a_corrupt_source_object_is_never_copied(tmp_path: Path) -> None:
    source, target = BlobStore(str(tmp_path / "a")), BlobStore(str(tmp_path / "b"))
    good = source.put_bytes(b"good")
    bad = source.put_bytes(b"original")
    Path(source.path_of(bad)).write_bytes(b"tampered")
    with pytest.raises(StoreCorrupt, match=bad):
        copy_missing(source, target, [good, bad], workers=2)
    assert set(target.digests()) <= {good}  # neither the digest nor the tampered bytes' own hash
    assert not target.exists(hash_bytes(b"tampered"))
    assert [p for p in (tmp_path / "b").rglob("*") if p.is_file() and "incoming" in p.parts] == []


# -- push and pull through a folder --------------------------------------------------------------------


def test_push_and_pull_through_a_folder_remote(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    files = _add_data(tmp_path)
    needed = _needed(sqlite_tracker)
    remote = tmp_path / "remote"
    first = push(datasets.catalog(), str(remote))
    assert (first.copied, first.skipped) == (len(needed), 0)
    assert set(_remote_files(remote)) == needed
    second = push(datasets.catalog(), str(remote))
    assert (second.copied, second.skipped, second.bytes) == (0, len(needed), 0)

    # A fresh process on the same project after its blobs are gone: pull brings every version back.
    shutil.rmtree(sqlite_tracker.blobs.root)
    fresh = Tracker(sqlite_tracker.settings)
    try:
        pulled = pull(datasets.catalog(fresh), str(remote), workers=3)
        assert (pulled.copied, pulled.skipped) == (len(needed), 0)
        datasets.get("images@v2", tmp_path / "out", tracker=fresh)
        assert {p: (tmp_path / "out" / p).read_bytes() for p in files} == files
        table = datasets.load("table", tracker=fresh)
        assert list(table["y"][:2]) == ["a", "b"]
    finally:
        fresh.close()


def test_push_only_the_named_versions(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    _add_data(tmp_path)
    remote = tmp_path / "remote"
    report = push(datasets.catalog(), str(remote), ["images@v1"])
    v1 = datasets.catalog().get("images@v1")
    entries = datasets.catalog().tree(v1).entries
    assert report.copied == len({e.digest for e in entries}) + 1  # + the tree
    assert hash_bytes(b"only in v2") not in _remote_files(remote)


def test_pull_needs_the_versions_on_the_remote(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    _add_data(tmp_path)
    push(datasets.catalog(), str(tmp_path / "remote"), ["images@v1"])
    with pytest.raises(NotFound, match="does not exist"):
        pull(datasets.catalog(), str(tmp_path / "nothing-here"))
    shutil.rmtree(sqlite_tracker.blobs.root)
    fresh = Tracker(sqlite_tracker.settings)
    try:
        with pytest.raises(NotFound, match=r"images@v2 cannot be transferred: .* is neither in"):
            pull(datasets.catalog(fresh), str(tmp_path / "remote"), ["images@v2"])
    finally:
        fresh.close()


def test_a_corrupt_remote_object_is_refused_on_pull(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    version = datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"original", "b.txt": b"fine"})).version
    remote = tmp_path / "remote"
    push(datasets.catalog(), str(remote))
    digest = hash_bytes(b"original")
    (remote / "objects" / digest[:2] / digest[2:]).write_bytes(b"tampered")
    shutil.rmtree(sqlite_tracker.blobs.root)
    fresh = Tracker(sqlite_tracker.settings)
    try:
        with pytest.raises(StoreCorrupt, match=digest):
            pull(datasets.catalog(fresh), str(remote), [version.ref])
        assert not fresh.blobs.exists(digest)
    finally:
        fresh.close()


# -- S3 ------------------------------------------------------------------------------------------------


def test_push_to_s3_and_pull_into_another_project(
    sqlite_tracker: Tracker, second_project: Tracker, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    files = _add_data(tmp_path)
    needed = _needed(sqlite_tracker)
    url = f"s3://{bucket}/team/data"
    first = push(datasets.catalog(), url, **s3_server.options())
    assert (first.copied, first.skipped) == (len(needed), 0)
    stored = _remote_files(s3_server.data_dir / bucket / "team" / "data")
    assert set(stored) == needed
    assert all(hash_bytes(data) == digest for digest, data in stored.items())
    again = push(datasets.catalog(), url, **s3_server.options())
    assert (again.copied, again.skipped) == (0, len(needed))

    pulled = pull(datasets.catalog(second_project), url, ["images@v1", "table"], **s3_server.options())
    assert pulled.copied > 0
    datasets.get("images@v1", tmp_path / "v1", tracker=second_project)
    originals = {p: files[p] for p in files if p.startswith("img/") and p != "img/00.bin"}
    assert {p: (tmp_path / "v1" / p).read_bytes() for p in originals} == originals
    with pytest.raises(NotFound):  # v2's new file was not pulled
        datasets.get("images@v2", tmp_path / "v2", tracker=second_project)


def test_credentials_and_endpoint_from_the_environment(
    sqlite_tracker: Tracker, s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"a"}))
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    assert push(datasets.catalog(), f"s3://{bucket}").copied == 2
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "changed-secret")  # a new secret is used, not a cached client
    with pytest.raises(RemoteError):
        push(datasets.catalog(), f"s3://{bucket}")


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_refused_credentials_are_a_clear_one_line_error(
    sqlite_tracker: Tracker, s3_server: S3Server, bucket: str, tmp_path: Path, wrong: str
) -> None:
    datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"a"}))
    bad_secret = "wrong-" + s3_server.secret[::-1]
    options = s3_server.options(secret=bad_secret) | ({"key": "NOSUCHKEY"} if wrong == "key" else {})
    with pytest.raises(RemoteError) as caught:
        push(datasets.catalog(), f"s3://{bucket}/p", **options)
    error = caught.value
    assert isinstance(error, StoreError)
    assert error.exit_code == 3
    assert "refused access" in error.message
    assert "\n" not in error.message
    assert bad_secret not in error.message
    assert s3_server.secret not in error.message
    assert not (s3_server.data_dir / bucket / "p").exists()


def test_an_unknown_bucket_is_not_found_and_never_created(
    sqlite_tracker: Tracker, s3_server: S3Server, tmp_path: Path
) -> None:
    datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"a"}))
    with pytest.raises(NotFound, match=r"bucket 'no-such-bucket'.*does not exist"):
        push(datasets.catalog(), "s3://no-such-bucket/p", **s3_server.options())
    with pytest.raises(NotFound, match="no-such-bucket"):
        pull(datasets.catalog(), "s3://no-such-bucket/p", **s3_server.options())
    assert not (s3_server.data_dir / "no-such-bucket").exists()


def test_an_unreachable_endpoint_is_a_store_error(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"a"}))
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(RemoteError, match=r"cannot reach the remote s3://b/p .*--endpoint-url"):
        push(
            datasets.catalog(),
            "s3://b/p",
            endpoint_url=f"http://127.0.0.1:{port}",
            key="k",
            secret="s",
            config_kwargs={"retries": {"max_attempts": 1}},  # merged with LoopML's own S3 options
        )


def test_a_corrupt_local_object_is_refused_on_push(
    sqlite_tracker: Tracker, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    datasets.add("f", _folder(tmp_path / "f", {"a.txt": b"original", "b.txt": b"fine"}))
    digest = hash_bytes(b"original")
    # A loose object is read before a packed one, so this corrupts the object however it was stored.
    path = Path(sqlite_tracker.blobs.path_of(digest))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"tampered")
    with pytest.raises(StoreCorrupt, match=digest):
        push(datasets.catalog(), f"s3://{bucket}/p", workers=1, **s3_server.options())
    root = s3_server.data_dir / bucket / "p"
    stored = _remote_files(root)
    assert digest not in stored
    assert b"tampered" not in stored.values()
    assert all(hash_bytes(data) == name for name, data in stored.items())
    assert [p for p in root.rglob("*") if p.is_file() and "incoming" in p.parts] == []


# -- the CLI ---------------------------------------------------------------------------------------------


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "AWS_"))}
    clean |= (env or {}) | {"COLUMNS": "200"}
    return subprocess.run(
        [LOOPML, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=clean, check=False
    )


def test_cli_push_and_pull_end_to_end(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert _cli(project, "init").returncode == 0
    _folder(project / "images", {f"{i}.txt": f"image {i}".encode() for i in range(30)})
    assert _cli(project, "data", "add", "images", "images").returncode == 0
    remote = ["--remote", f"s3://{bucket}/prefix", "--endpoint-url", s3_server.endpoint_url]

    pushed = _cli(project, "data", "push", *remote, "--workers", "4", env=s3_server.env())
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == "Pushed 31 objects (0.0 MiB), 0 already there"
    assert pushed.stderr == ""
    again = _cli(project, "data", "push", "images@v1", *remote, "--json", env=s3_server.env())
    assert json.loads(again.stdout) == {"copied": 0, "skipped": 31, "bytes": 0}

    shutil.rmtree(project / ".loopml" / "blobs")
    pulled = _cli(project, "data", "pull", *remote, env=s3_server.env())
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith("Pulled 31 objects")
    assert _cli(project, "data", "get", "images", "-o", "out").returncode == 0
    assert (project / "out" / "7.txt").read_text() == "image 7"

    refused = _cli(project, "data", "push", *remote, env=s3_server.env(secret="not-the-secret"))
    assert refused.returncode == 3
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: the remote s3://")
    assert "not-the-secret" not in refused.stderr
    assert "Traceback" not in refused.stderr


def test_public_errors_include_remote_error() -> None:
    assert issubclass(RemoteError, loopml.StoreError)
    assert RemoteError.exit_code == 3


def test_many_small_files_travel_as_whole_packs(sqlite_tracker: Tracker, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(500):
        (folder / f"{i:03}.txt").write_bytes(f"small file {i}".encode())
    version = datasets.add("many", folder).version
    remote = tmp_path / "remote"
    report = push(datasets.catalog(), str(remote))
    assert report.copied == 501  # 500 files and the tree (folders have no profile)
    remote_files = [p for p in remote.rglob("*") if p.is_file()]
    assert len(remote_files) < 10  # a pack and its index, plus the few loose objects
    shutil.rmtree(sqlite_tracker.blobs.root)
    fresh = Tracker(sqlite_tracker.settings)
    try:
        pull(datasets.catalog(fresh), str(remote), [version.ref])
        datasets.get(version.ref, tmp_path / "out", tracker=fresh)
    finally:
        fresh.close()
    assert (tmp_path / "out" / "042.txt").read_bytes() == b"small file 42"


def test_no_copy_on_s3_fingerprints_by_etag(
    sqlite_tracker: Tracker, s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOPML_S3_ENDPOINT_URL", s3_server.endpoint_url)
    fs = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": s3_server.endpoint_url},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )
    fs.pipe(f"{bucket}/lake/a.csv", b"x\n1\n")
    fs.pipe(f"{bucket}/lake/b.csv", b"x\n2\n")
    version = datasets.add("lake", f"s3://{bucket}/lake", no_copy=True).version
    assert version.kind == "external"
    assert version.file_count == 2
    assert datasets.catalog().external_changes(version).identical
    fs.pipe(f"{bucket}/lake/b.csv", b"x\n3\n")
    assert datasets.catalog().external_changes(version).changed == ["b.csv"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(loopml.LoopMLError) as error:
        datasets.catalog().external_changes(version)
    assert "wrong" not in str(error.value)
