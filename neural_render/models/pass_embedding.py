"""DiffusionRenderer pass/task embedding: a learned table replacing text/CLIP tokens.

Each G-buffer pass (or task) name owns ``num_tokens`` learned context tokens of width ``dim``; the inverse
model is told which pass to output by feeding those tokens as the backbone's ``context`` (B, L, D).
diffusers ModelMixin + ConfigMixin, so ``save_pretrained`` / ``from_pretrained`` give config.json + safetensors.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 - diffusers' loader finds from_pretrained through this name
from torch import nn

from neural_render.errors import NeuralRenderError
from neural_render.models.persistence import LocalModelMixin

DEFAULT_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


class PassEmbedding(LocalModelMixin):
    """ids (B,) long -> context tokens (B, num_tokens, dim) float32.

    names: pass/task names in id order. num_tokens: L tokens per pass. dim: D (= backbone.context_dim).
    init_std: std of the normal initialisation (random init uses the global torch RNG; pass a seeded
    ``generator`` to :meth:`reset_parameters` for a reproducible one).
    """

    @register_to_config
    def __init__(self, names: list[str] | tuple[str, ...] = DEFAULT_PASSES, num_tokens: int = 1, dim: int = 32,
                 init_std: float = 0.02):
        super().__init__()
        names = [str(n) for n in names]
        if not names or len(set(names)) != len(names):
            raise NeuralRenderError(f"pass names must be non-empty and unique, got {names}")
        if int(num_tokens) <= 0 or int(dim) <= 0:
            raise NeuralRenderError(f"num_tokens and dim must be > 0, got {num_tokens}, {dim}")
        self.names = names
        self.num_tokens = int(num_tokens)
        self.dim = int(dim)
        self.tokens = nn.Parameter(torch.empty(len(names), self.num_tokens, self.dim))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.tokens.normal_(0.0, float(self.config.init_std), generator=generator)

    def ids(self, names: str | list[str] | tuple[str, ...], device: torch.device | str | None = None) -> torch.Tensor:
        """Name or list of names -> (B,) long ids. Unknown name -> NeuralRenderError listing the known ones."""
        if isinstance(names, str):
            names = [names]
        out = []
        for name in names:
            if name not in self.names:
                raise NeuralRenderError(f"unknown pass/task {name!r}; known: {self.names}")
            out.append(self.names.index(name))
        return torch.tensor(out, dtype=torch.long, device=device if device is not None else self.tokens.device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B,) long in [0, len(names)) -> (B, num_tokens, dim)."""
        if not torch.is_tensor(ids) or ids.ndim != 1 or ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise NeuralRenderError(f"pass ids must be a (B,) integer tensor, got {getattr(ids, 'shape', ids)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.names)):
            raise NeuralRenderError(f"pass id out of range 0..{len(self.names) - 1}: {ids.tolist()}")
        return self.tokens[ids.long()]

    def embed(self, names: str | list[str]) -> torch.Tensor:
        """Names -> (B, num_tokens, dim) context tokens."""
        return self(self.ids(names))
