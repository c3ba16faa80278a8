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


def move_to_device(data, device):
    """``data`` with every tensor moved to ``device``: tensors, :class:`~neural_render.types.GBuffer`, and dicts /
    lists / tuples of them, nested (Lightning's ``apply_to_collection``; other values are returned as they are)."""
    from lightning_utilities.core.apply_func import apply_to_collection
    from torch import Tensor

    from neural_render.types import GBuffer

    data = apply_to_collection(data, GBuffer, lambda g: g.map(lambda x: x.to(device)))
    return apply_to_collection(data, Tensor, lambda t: t.to(device))
