"""Toy task: learn the fixed per-pixel colour transform of :mod:`neural_render.data.toy` (input video -> target).

x0 = codec(target), cond = codec(input), context = pass embedding of ``pass_id`` (if the system has one).
``clean_first_frames`` > 0 gives the first frames of the target clean (never noised, not in the loss), the
IC-LoRA-style path. Small enough to overfit on CPU in seconds; it proves the training loop learns.
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.tasks.base import DiffusionSystem


class ToyTask(DiffusionSystem):
    """DiffusionSystem on batches {"input": (B,T,3,H,W), "target": (B,T,3,H,W), "pass_id": (B,)}.

    clean_first_frames: number of leading latent frames given clean (0 = none); other args: :class:`DiffusionSystem`.
    """

    def __init__(self, *args, clean_first_frames: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        if clean_first_frames < 0:
            raise NeuralRenderError(f"clean_first_frames must be >= 0, got {clean_first_frames}")
        self.clean_first_frames = int(clean_first_frames)

    def make_batch(self, batch: dict) -> tuple[Tensor, Tensor | None, Tensor | None, dict]:
        for key in ("input", "target"):
            if key not in batch:
                raise NeuralRenderError(f"toy batch needs key {key!r}, got {sorted(batch)}")
        x0 = self.encode(batch["target"])
        cond = self.encode(batch["input"])
        context = self.embed_context(batch.get("pass_id"))
        masks = {}
        if self.clean_first_frames:
            clean = torch.zeros(x0.shape[:2], dtype=torch.bool, device=x0.device)
            clean[:, : self.clean_first_frames] = True
            masks["clean_frames"] = clean
        return x0, cond, context, masks
