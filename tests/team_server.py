"""A live team server for tests: uvicorn on 127.0.0.1 over a project's tracker, in a thread.

Used by the server tests and by the client suite's "through a server" mode (modules that set
`CLIENT_SUITE = True` run their `tracker` tests a second time with the tracker talking to a server over HTTP).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from loopml.server.app import ServerOptions, create_server_app
from loopml.tracking.tracker import Tracker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(tracker: Tracker, **options: Any) -> Iterator[str]:
    """The team server over `tracker` until the block ends; yields its base URL."""
    with serving_app(create_server_app(tracker, options=ServerOptions(**options))) as url:
        yield url


@contextlib.contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """Any ASGI app under uvicorn on 127.0.0.1, in a thread, until the block ends; yields its base URL."""
    port = free_port()
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=10)
