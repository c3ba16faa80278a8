"""Where the shipped assets live (env maps, example clips, tiny trained models).

Assets sit in the repository's top-level ``data/`` folder (beside the package, found from an editable
install or a source checkout). ``NEURAL_RENDER_DATA`` points elsewhere, e.g. for a wheel install.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from neural_render.errors import NeuralRenderError

ENV_VAR = "NEURAL_RENDER_DATA"


def data_dir() -> Path:
    """The shipped data folder; NeuralRenderError when it cannot be found."""
    candidates = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    candidates.append(Path(__file__).resolve().parents[1] / "data")
    for path in candidates:
        if (path / "envmaps").is_dir():
            return path
    raise NeuralRenderError(f"shipped data folder not found (looked in {', '.join(map(str, candidates))}); "
                            f"set {ENV_VAR} to the repository's data/ folder")


def envmap_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped env map by name (e.g. 'kiara_1_dawn') or an existing file path."""
    path = Path(name_or_path)
    if path.suffix and path.exists():
        return path
    if path.suffix:
        raise NeuralRenderError("env map file does not exist", path)
    folder = data_dir() / "envmaps"
    for suffix in (".hdr", ".exr"):
        if (folder / f"{name_or_path}{suffix}").exists():
            return folder / f"{name_or_path}{suffix}"
    known = ", ".join(sorted(p.stem for p in folder.glob("*.hdr")))
    raise NeuralRenderError(f"no shipped env map named {str(name_or_path)!r}; shipped: {known}")


def clip_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped example clip folder by name (``data/clips/<name>``, e.g. 'demo_lebombo') or an existing clip folder
    (a folder holding meta.json); NeuralRenderError naming the shipped clips otherwise."""
    path = Path(name_or_path)
    if (path / "meta.json").is_file():
        return path
    folder = data_dir() / "clips"
    if path.name == str(name_or_path) and (folder / path.name / "meta.json").is_file():
        return folder / path.name
    known = ", ".join(sorted(p.parent.name for p in folder.glob("*/meta.json"))) or "none"
    raise NeuralRenderError(f"no clip folder (meta.json) and no shipped clip named {str(name_or_path)!r}; "
                            f"shipped: {known}", path)


#: keys of data/envmaps/split.json: the shipped models' training maps; held-out maps for every choice (model
#: selection, ablations; "test" before issue #22); held-out maps scored once per shipped model; a training pool
ENVMAP_SPLITS = ("train", "val", "test", "train_extra")


def envmap_split() -> dict[str, list[str]]:
    """{'train': [...], 'val': [...], 'test': [...], 'train_extra': [...]} names of the shipped env maps (see
    ``ENVMAP_SPLITS`` and data/envmaps/CREDITS.md): val and test maps are never trained on, and test maps are never
    used to make a choice. NeuralRenderError when split.json is unreadable or lacks a key."""
    path = data_dir() / "envmaps" / "split.json"
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"cannot read env map split ({err})", path) from err
    missing = [key for key in ENVMAP_SPLITS if not isinstance(split.get(key), list)]
    if missing:
        raise NeuralRenderError(f"env map split lacks {', '.join(missing)} (keys: {', '.join(ENVMAP_SPLITS)})", path)
    return split


#: derived env-map sets (not keys of split.json): unions of its keys. ``train_all``: the training maps of the
#: generator version 2 splits (synth/splits.py train2), the 8 train maps + the 4 train_extra maps
ENVMAP_UNIONS = {"train_all": ("train", "train_extra")}


def envmap_names(key: str) -> list[str]:
    """Names of the shipped env maps of ``key``: a key of ``ENVMAP_SPLITS`` or of ``ENVMAP_UNIONS`` (in the order of
    its parts); NeuralRenderError otherwise."""
    split = envmap_split()
    if key in ENVMAP_UNIONS:
        return [name for part in ENVMAP_UNIONS[key] for name in split[part]]
    if key not in split:
        raise NeuralRenderError(f"unknown env map set {key!r}; known: {', '.join((*ENVMAP_SPLITS, *ENVMAP_UNIONS))}")
    return list(split[key])


#: folders of data/textures/ (scripts/import_textures.py): image textures by split, never mixed
TEXTURE_SPLITS = ("train", "val", "test")
TEXTURE_SUFFIXES = (".jpg", ".jpeg", ".png")


def texture_files(split: str) -> list[Path]:
    """Sorted image texture files of ``data/textures/<split>/`` (``TEXTURE_SPLITS``); NeuralRenderError when the
    split is unknown or its folder holds none (see scripts/import_textures.py)."""
    if split not in TEXTURE_SPLITS:
        raise NeuralRenderError(f"unknown texture split {split!r}; known: {', '.join(TEXTURE_SPLITS)}")
    folder = data_dir() / "textures" / split
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in TEXTURE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise NeuralRenderError("no image textures (make them with scripts/import_textures.py)", folder)
    return files
