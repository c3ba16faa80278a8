"""Which models the demo uses (folders resolved by :mod:`neural_render.hub`).

Inverse: ``--inverse-model`` or the shipped ``inverse_tiny`` (required). Forward: ``--model``, else the shipped
``forward_tiny`` when present, else None = the classical split-sum shader (also with ``classical``). Insertion:
the shipped ``forward_cache_tiny`` (the shipped forward model + a trained 3D-cache injection), only beside the
shipped forward model it was fine-tuned from (a ``--model`` of your own has no injection trained for it) and not
with ``no_cache``.
"""

from __future__ import annotations

import os
from pathlib import Path


def inverse_folder(path: str | os.PathLike | None) -> Path:
    """--inverse-model or the shipped inverse_tiny; NeuralRenderError naming the folder (and how to make it)."""
    from neural_render import hub

    return hub.resolve_model(path, "inverse", option="--inverse-model")


def forward_folder(model: str | os.PathLike | None, classical: bool = False) -> Path | None:
    """The forward pipeline folder to use, or None for the classical shader."""
    from neural_render import hub
    from neural_render.errors import NeuralRenderError

    if classical:
        if model is not None:
            raise NeuralRenderError("--classical and --model exclude each other")
        return None
    if model is not None:
        return hub.resolve_model(model, "forward")
    return hub.default_model("forward")


def cache_folder(no_cache: bool, model: str | os.PathLike | None, forward_dir: Path | None) -> Path | None:
    """The shipped cache-injection model for the insertion, or None (module doc)."""
    from neural_render import hub

    if no_cache or model is not None or forward_dir is None:
        return None
    folder = hub.default_model("forward_cache")
    return folder if folder is not None and (folder / "cache_injection" / "config.json").is_file() else None


def load_models(inverse_dir: Path, forward_dir: Path | None, cache_dir: Path | None, seed: int = 0):
    """(inverse pipeline, demo.run.Renderer): the forward model (+ the cache model for insertion) or the classical
    shader; an untrained inverse model is logged as such."""
    import logging

    from neural_render import hub
    from neural_render.demo.run import Renderer

    inverse = hub.load_inverse(inverse_dir)
    if not inverse.is_trained:
        logging.getLogger(__name__).warning(f"the inverse model {inverse_dir} is UNTRAINED: its G-buffers are "
                                            "meaningless")
    if forward_dir is None:
        return inverse, Renderer(None, "classical split-sum shader", seed)
    forward = hub.load_forward(forward_dir)
    insert_forward = hub.load_cache_forward(cache_dir) if cache_dir is not None else None
    return inverse, Renderer(forward, f"neural forward model {forward_dir.name}", seed, insert_forward)
