"""Env maps given by users: a shipped name (data/envmaps) or an .hdr/.exr file, turned by 'yaw,pitch,roll' degrees
(world up +Y; render/envmap.py), or a clip folder's own env map. Bad names, files or angles -> NeuralRenderError."""

from __future__ import annotations

import os


def parse_rotation(text: str) -> tuple[float, float, float]:
    """'yaw,pitch,roll' in degrees -> three finite floats."""
    import math

    from neural_render.errors import NeuralRenderError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise NeuralRenderError(f"rotation must be yaw,pitch,roll in degrees, got {text!r}")
    return values  # type: ignore[return-value]


def load_env(name_or_path: str | os.PathLike, rotate: str = "0,0,0"):
    """Env map by shipped name or file, rotated by 'yaw,pitch,roll' degrees -> EnvMap."""
    from neural_render.data_assets import envmap_path
    from neural_render.io import load_envmap

    yaw, pitch, roll = parse_rotation(rotate)
    return load_envmap(envmap_path(name_or_path)).rotated(yaw, pitch, roll)


def given_or_clip_env(envmap: str | None, rotate: str, source: str | os.PathLike, meta, missing: str):
    """``envmap`` (a shipped name or file) when given, else the env map of the clip folder ``source`` (``meta``: its
    ClipMeta, None for a plain video), rotated by ``rotate``; NeuralRenderError(``missing``, source) when neither."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip_envmap

    if envmap:
        return load_env(envmap, rotate)
    env = read_clip_envmap(source, meta) if meta is not None else None
    if env is None:
        raise NeuralRenderError(missing, source)
    return env.rotated(*parse_rotation(rotate))
