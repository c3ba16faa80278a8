"""Output safety for every command: validate ``--out`` before any work, own what is written, lock while writing.

The rule (README, "Bad input and outputs"): a command never deletes or overwrites a file or folder it did not
create, and never touches its input. So, before any model work, :func:`check_output`

* refuses paths that cannot be written (a parent that is a file, a folder where nothing can be created, a name
  over the file system's limit, the root folder, the current folder or one of its parents for a folder output);
* refuses an output that is, or would contain, one of the command's inputs (even with ``--overwrite``);
* accepts a missing target, an empty folder, or a previous output of the SAME command (recognised by the owner
  marker every writer leaves: :data:`MARKER_FILE` inside folders, ``comment`` metadata in MP4s, a PNG text chunk,
  ``"written_by"`` in JSON); anything else is refused unless the user passed ``--overwrite``.

:func:`claim_output` wraps that check with an exclusive lock (``.<name>.lock`` beside the target, ``flock``): a
second run writing the same output exits 2 naming the process that holds it, so two runs can never corrupt or
sabotage each other. The lock file is removed when the holder ends. Every failure is a
:class:`~neural_render.errors.NeuralRenderError` (exit 2, one line).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from neural_render.errors import NeuralRenderError

MARKER_FILE = ".neural-render-output.json"
MARKER_PREFIX = "neural-render"
PNG_TEXT_KEY = "neural-render"


def marker(command: str) -> str:
    """The owner tag written into outputs of ``command``, e.g. ``'neural-render inverse'``."""
    return f"{MARKER_PREFIX} {command}"


def write_folder_marker(folder: str | os.PathLike, command: str) -> None:
    """Record in ``folder`` (usually the temporary folder about to be renamed into place) that ``command`` wrote it."""
    (Path(folder) / MARKER_FILE).write_text(_marker_json(command))


def _marker_json(command: str) -> str:
    from neural_render import __version__

    return json.dumps({"written_by": marker(command), "version": __version__}) + "\n"


def _mp4_comment(path: Path) -> str | None:
    """The ``comment`` metadata of a video file (ffmpeg's header dump), or None when unreadable."""
    try:
        import imageio_ffmpeg

        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", os.fspath(path)],
                              capture_output=True, text=True, timeout=30)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not ours
        return None
    for line in proc.stderr.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "comment":
            return value.strip()
    return None


def written_by(path: str | os.PathLike) -> str | None:
    """The owner tag of an existing output (folder marker, MP4 comment, PNG text, JSON ``written_by``), else None."""
    p = Path(path)
    try:
        if p.is_dir():
            data = json.loads((p / MARKER_FILE).read_text())
            return data.get("written_by") if isinstance(data, dict) else None
        suffix = p.suffix.lower()
        if suffix == ".mp4":
            return _mp4_comment(p)
        if suffix == ".png":
            from PIL import Image

            with Image.open(p) as image:
                return getattr(image, "text", {}).get(PNG_TEXT_KEY)
        if suffix == ".json":
            data = json.loads(p.read_text())
            return data.get("written_by") if isinstance(data, dict) else None
    except (OSError, ValueError, SyntaxError):
        return None
    return None


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _nearest_existing(path: Path) -> Path:
    folder = path.parent
    while not (folder.exists() or folder.is_symlink()):
        folder = folder.parent
    return folder


def _check_writable(folder: Path, target: Path) -> None:
    if not folder.is_dir():
        raise NeuralRenderError(f"cannot write here: {folder} is a file, not a folder", target)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".neural-render-probe-")
    except OSError as err:
        raise NeuralRenderError(f"cannot write in {folder}: {err.strerror or err}", target) from None
    os.close(fd)
    os.unlink(probe)


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


#: bytes a target's name must leave free for the names made from it (``.<name>.lock``, ``.<name>.tmp-<pid>-<hex>``)
NAME_MARGIN = 40


def _protected_inputs(command: str) -> list[Path]:
    """Folders no command may replace, nor overwrite anything inside with --overwrite: the shipped data folder
    (models, env maps, clips); not for ``fit``, whose --export_dir may be a shipped model folder being retrained."""
    if command == "fit":
        return []
    from neural_render.data_assets import data_dir

    try:
        return [data_dir()]
    except Exception:  # noqa: BLE001 - no data folder: nothing to protect
        return []


def check_output(path: str | os.PathLike, *, command: str, kind: str = "dir", overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), also_owned_if: Iterable[str] = ()) -> Path:
    """Validate an output path before any work (module doc); returns it absolute. Creates nothing.

    kind: "dir" (a folder the command fills) or "file". inputs: the command's input paths (files or folders; None
    entries are ignored): the output may not be, contain, or lie inside any of them (the shipped data folder is
    always an input, see :func:`_protected_inputs`). also_owned_if: file names whose presence marks a folder as a
    previous output of this command (e.g. synth's ``synth.json``, for folders written before markers existed).
    The path is resolved as the operating system will (symbolic links first, then ``..``); an --out that is itself
    a symbolic link is refused, since replacing it would delete the user's link.
    """
    text = os.fspath(path)
    if not text.strip():
        raise NeuralRenderError("--out is empty")
    try:
        lexical = Path(os.path.abspath(os.path.expanduser(text)))
        target = Path(os.path.realpath(os.path.expanduser(text)))
    except (OSError, RuntimeError, ValueError) as err:
        raise NeuralRenderError(f"--out cannot be resolved: {err}", text) from None
    if lexical.is_symlink():
        raise NeuralRenderError("--out is a symbolic link; name the real path (the link is left untouched)", text)
    if target == Path(target.anchor):
        raise NeuralRenderError("--out is the root folder", target)
    if len(os.fsencode(os.fspath(target))) >= 4096 - NAME_MARGIN:
        raise NeuralRenderError("--out path is too long", text)
    existing = _nearest_existing(target)
    limit = _name_max(existing if existing.is_dir() else existing.parent) - NAME_MARGIN
    for part in target.relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise NeuralRenderError(f"a name in --out is longer than {limit} bytes (the file system's limit minus "
                                    f"{NAME_MARGIN} for temporary names; {part[:40]}...)", text)
    if kind == "dir" and _is_within(Path.cwd().resolve(), target):
        raise NeuralRenderError("--out is the current folder or one of its parents; name a new or empty folder", text)
    for item in inputs:
        if item is None:
            continue
        try:
            source = Path(os.path.realpath(os.path.expanduser(os.fspath(item))))
        except (OSError, RuntimeError, ValueError):
            continue
        if _is_within(source, target):
            raise NeuralRenderError(f"--out would replace the input {item}; choose another output", text)
        if source.is_dir() and _is_within(target, source):
            raise NeuralRenderError(f"--out lies inside the input folder {item}, which is never written to; "
                                    "choose another output", text)
    shipped = _protected_inputs(command)
    for folder in shipped:
        if _is_within(folder.resolve(), target):
            raise NeuralRenderError(f"--out would replace the shipped data folder {folder}; choose another output",
                                    text)
    _check_writable(existing, target)
    if not target.exists():
        return target
    if kind == "file" and target.is_dir():
        raise NeuralRenderError("--out is an existing folder, expected a file", target)
    if kind == "dir" and target.is_dir() and not any(target.iterdir()):
        return target
    if written_by(target) == marker(command):
        return target
    if kind == "dir" and target.is_dir() and any((target / name).is_file() for name in also_owned_if):
        return target
    if overwrite and not any(_is_within(target, folder.resolve()) for folder in shipped):
        return target
    what = "folder holds files" if target.is_dir() else "file exists and was"
    raise NeuralRenderError(f"{what} not written by `neural-render {command}`; it is left untouched: choose another "
                            "--out, or pass --overwrite to replace it", target)


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, `neural-render {info['command']}` since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``target`` (file ``.<name>.lock`` beside it) for the block; yields the lock path.

    Raises NeuralRenderError naming the holder when another process has it. Missing parent folders are created
    (and removed again, when still empty, if the block fails).
    """
    import fcntl

    target = Path(os.path.realpath(target))
    created = []
    folder = target.parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeuralRenderError(f"cannot create the output's folder: {err.strerror or err}", target.parent) from None
    lock = target.parent / f".{target.name}.lock"
    if lock.exists() and lock.stat().st_size and _lock_holder(lock) == "another process":
        raise NeuralRenderError("a file with the lock's name exists and is not a neural-render lock; it is left "
                                "untouched: remove it or choose another --out", lock)
    try:
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise NeuralRenderError(f"cannot create the lock file: {err.strerror or err}", lock) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise NeuralRenderError(f"another run is writing this output ({_lock_holder(lock)}); wait for "
                                            "it to finish or choose another --out", target) from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and flock: take the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        try:
            yield lock
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def claim_output(path: str | os.PathLike, *, command: str, kind: str = "dir", overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), also_owned_if: Iterable[str] = ()) -> Iterator[Path]:
    """:func:`check_output`, then :func:`output_lock` for the block (checked again once locked); yields the path."""
    inputs = list(inputs)
    kwargs = dict(command=command, kind=kind, overwrite=overwrite, inputs=inputs, also_owned_if=also_owned_if)
    target = check_output(path, **kwargs)
    with output_lock(target, command):
        yield check_output(path, **kwargs)


def add_out_argument(parser, what: str, *, required: bool = True, default: str | None = None,
                     overwrite: bool = True) -> None:
    """``--out`` (with help saying what happens to existing content) and, where replacing is possible,
    ``--overwrite``."""
    existing = ("an existing one is replaced only when it is empty or a previous output of this command, otherwise "
                "refused (exit 2)" + (" unless --overwrite" if overwrite else ""))
    parser.add_argument("--out", required=required, default=default,
                        help=f"{what}; written to a temporary name and renamed into place; {existing}"
                             + (f" (default: {default})" if default else ""))
    if overwrite:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an existing --out even if this command did not write it (never an input)")


def open_folder(path: str | os.PathLike, *, command: str, inputs: Iterable[str | os.PathLike | None] = (),
                also_owned_if: Iterable[str] = ()) -> Path:
    """For commands that fill a folder incrementally and resume (synth, autolabel, sim2real-data): check it (never
    replaced, so no --overwrite), create it and mark it as this command's. Concurrent writers of one such folder
    coordinate per entry (per-clip locks or owner-checked temporaries), so no folder lock is taken here."""
    from neural_render.io.atomic import atomic_path

    target = check_output(path, command=command, kind="dir", inputs=inputs, also_owned_if=also_owned_if)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NeuralRenderError(f"cannot create the output folder: {err.strerror or err}", target) from None
    if written_by(target) != marker(command):
        with atomic_path(target / MARKER_FILE) as tmp:
            Path(tmp).write_text(_marker_json(command))
    return target
