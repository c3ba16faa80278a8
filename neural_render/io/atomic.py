"""Atomic file and folder writes: write to a temporary name beside the target, then rename into place.

A reader never sees a half-written target: either the old content (or nothing) or the complete new one.
If the writer raises (or the process is killed), the target is untouched; on an exception the temporary
file or folder is removed and the exception re-raised (a killed process may leave a hidden
``.<name>.tmp-*`` entry behind, never a broken target).

Usage::

    with atomic_path("out/frame.exr") as tmp:      # tmp: str, e.g. "out/.frame.exr.tmp-123-ab12cd.exr"
        writer(tmp)                                  # writers that infer the format from the suffix work
    with atomic_dir("out/clip") as tmp_dir:          # tmp_dir: str, an empty folder beside "out/clip"
        ...fill tmp_dir...
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def _temp_name(target: Path, kind: str) -> Path:
    """Hidden sibling of ``target``: ``.<name>.<kind>-<pid>-<random><suffix>`` (same folder, same suffix)."""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{target.suffix}")


def _remove(path: Path) -> None:
    """Best-effort removal of a file or folder (used while another exception is propagating)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file path (str) beside ``path`` that keeps its suffix; on success ``os.replace`` it onto
    ``path``.

    Parent folders are created. On an exception inside the block the temporary file is removed and the
    exception re-raised; ``path`` is left as it was. If the block created no file, nothing is replaced and
    a ``FileNotFoundError`` naming ``path`` is raised.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, "tmp")
    try:
        yield os.fspath(tmp)
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {target} produced no file")
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[str]:
    """Yield a fresh empty temporary folder (str) beside ``path``; on success it replaces ``path``.

    If ``path`` already exists it is renamed aside, the new folder renamed in, and the old one deleted
    (if the second rename fails the old one is put back). On an exception inside the block the temporary
    folder is removed and the exception re-raised; ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, "tmp")
    tmp.mkdir()
    try:
        yield os.fspath(tmp)
        if not tmp.is_dir():
            raise FileNotFoundError(f"atomic folder write of {target}: temporary folder {tmp} disappeared")
        if target.exists() or target.is_symlink():
            old = _temp_name(target, "old")
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
