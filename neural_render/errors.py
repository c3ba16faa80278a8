"""The one project exception type.

Every boundary (file readers, validators, CLI argument checks) raises :class:`NeuralRenderError`
with the offending file (or object) and a human reason. The CLI maps it to exit code 2.
"""

from __future__ import annotations

import os


class NeuralRenderError(Exception):
    """Bad input: names what was wrong (``path``) and why (``reason``)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.reason = str(reason)
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {self.reason}" if self.path else self.reason)
