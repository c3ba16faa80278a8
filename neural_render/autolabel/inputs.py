"""The inputs of ``neural-render autolabel`` and which process labels which.

Inputs (entries of INPUT_DIR, sorted by name, hidden ones skipped): video files (:data:`VIDEO_SUFFIXES`), folders
of PNG/JPG frames, clip folders (meta.json). Clip id = file stem or folder name (the full file name when two
inputs share a stem). Sharding: clip i (in sorted order) belongs to rank ``i % world_size``.
"""

from __future__ import annotations

import os
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def find_inputs(input_dir: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Sorted (clip id, path) of the usable inputs of ``input_dir`` (module doc), ``exclude`` (e.g. the output
    folder inside it) left out; NeuralRenderError when there are none."""
    from neural_render.errors import NeuralRenderError

    root = Path(input_dir)
    if not root.is_dir():
        raise NeuralRenderError("input folder does not exist", root)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or (skip is not None and entry.resolve() == skip):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            found.append((entry.stem, entry))
        elif entry.is_dir() and ((entry / "meta.json").is_file()
                                 or any(f.suffix.lower() in FRAME_SUFFIXES for f in entry.iterdir() if f.is_file())):
            found.append((entry.name, entry))
    if not found:
        raise NeuralRenderError(f"no videos ({', '.join(VIDEO_SUFFIXES)}), frame folders or clip folders found", root)
    stems = [cid for cid, _ in found]
    return [(path.name if stems.count(cid) > 1 else cid, path) for cid, path in found]


def shard(items: list, rank: int, world_size: int) -> list:
    """Items of ``rank``: every ``world_size``-th item starting at ``rank``."""
    return items[rank::world_size]


def env_rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the environment (0, 1 when unset); NeuralRenderError when inconsistent."""
    from neural_render.errors import NeuralRenderError

    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise NeuralRenderError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise NeuralRenderError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world
