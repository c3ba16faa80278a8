"""Process-wide setup of a command run: where diagnostics go, and SIGTERM unwinding like Ctrl-C.

* :func:`configure_logging`: the ``neural_render`` loggers write ``neural-render: WARNING: ...`` lines to the
  current ``sys.stderr`` (result lines stay on stdout); level from ``$NEURAL_RENDER_LOG_LEVEL``.
* :func:`sigterm_unwinds`: while active (main thread only), SIGTERM raises ``SystemExit(143)``, so every atomic
  write removes its temporaries and locks are released, as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import sys

LOG_LEVEL_ENV = "NEURAL_RENDER_LOG_LEVEL"
EXIT_TERMINATED = 128 + 15


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the current ``sys.stderr`` (looked up per record: redirection and capture work)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging() -> None:
    """Diagnostics of the ``neural_render`` loggers go to stderr as ``neural-render: WARNING: ...`` (once per process).

    Level: ``$NEURAL_RENDER_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default WARNING). Result lines stay on stdout.
    """
    import os

    logger = logging.getLogger("neural_render")
    level = logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "WARNING").strip().upper())
    logger.setLevel(level if isinstance(level, int) else logging.WARNING)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("neural-render: %(levelname)s: %(message)s"))
        logger.addHandler(handler)


def _terminate(signum, frame):
    """SIGTERM: unwind like Ctrl-C so every atomic write removes its temporaries and locks are released."""
    raise SystemExit(EXIT_TERMINATED)


@contextlib.contextmanager
def sigterm_unwinds():
    """SIGTERM -> SystemExit(143) inside the block (in the main thread; elsewhere signals cannot be set: no-op)."""
    import signal
    import threading

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        yield
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
