"""Torch device names given by users (``--device``) -> ``torch.device``."""

from __future__ import annotations


def resolve_device(name: str):
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ... -> torch.device.

    NeuralRenderError for a name torch does not know or a CUDA device on a machine without CUDA."""
    import torch

    from neural_render.errors import NeuralRenderError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise NeuralRenderError(f"bad --device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuralRenderError(f"--device {name}: CUDA is not available")
    return device
