"""Per-step log capture: what a step prints or logs is kept with its run, even when steps run in threads.

`sys.stdout`, `sys.stderr` and the root logger are routed once through objects that look up the current
step's buffer in a ContextVar: writes from a step's thread go to its buffer (and still to the terminal),
everything else passes through untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

MAX_LOG_CHARS = 1_000_000  # per step call; the tail beyond it is dropped and the cut is marked

_buffer: contextvars.ContextVar[_StepLog | None] = contextvars.ContextVar("loopml_step_log", default=None)
_install_lock = threading.Lock()
_handler: logging.Handler | None = None
_captures = 0  # step calls capturing right now, in any thread


class _StepLog:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            room = MAX_LOG_CHARS - self.size
            if room <= 0:
                self.truncated = True
                return
            if len(text) > room:
                text, self.truncated = text[:room], True
            self.parts.append(text)
            self.size += len(text)

    def text(self) -> str:
        with self.lock:
            return "".join(self.parts) + ("\n[log truncated]\n" if self.truncated else "")


class _RoutingStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: copies a step's writes into its log."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        log = _buffer.get()
        if log is not None:
            log.write(text)
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class _RoutingHandler(logging.Handler):
    """Copies log records emitted inside a step into its log (the user's handlers still get them)."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _buffer.get()
        if log is not None:
            log.write(self.format(record) + "\n")


def _install() -> None:
    # Checked on every capture, not once: test runners and notebooks swap sys.stdout back and forth.
    global _handler, _captures  # noqa: PLW0603  (the routing is process-wide by nature)
    with _install_lock:
        if not isinstance(sys.stdout, _RoutingStream):
            sys.stdout = _RoutingStream(sys.stdout)
        if not isinstance(sys.stderr, _RoutingStream):
            sys.stderr = _RoutingStream(sys.stderr)
        _captures += 1
        if _handler is None:
            _handler = _RoutingHandler(level=logging.INFO)
            _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(_handler)


def _uninstall() -> None:
    # The root handler is there only while a step runs: a root logger without handlers of its own must
    # keep Python's defaults (the last-resort stderr output, `logging.basicConfig` taking effect).
    global _handler, _captures  # noqa: PLW0603
    with _install_lock:
        _captures -= 1
        if _captures == 0 and _handler is not None:
            logging.getLogger().removeHandler(_handler)
            _handler = None


@contextlib.contextmanager
def captured() -> Iterator[_StepLog]:
    """Capture this context's prints and log records; read them with `.text()` afterwards."""
    _install()
    log = _StepLog()
    token = _buffer.set(log)
    try:
        yield log
    finally:
        _buffer.reset(token)
        _uninstall()
