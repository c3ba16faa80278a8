"""What the toolkit's commands read of a DiffusionRenderer inverse or forward pipeline (shared by
pipelines/diffusion_renderer_inverse.py and pipelines/diffusion_renderer_forward.py): window settings in video
frames, default steps and processing size, device moves, the spatial stride of the sampler."""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from neural_render.errors import NeuralRenderError


class DiffusionRendererCommandPipeline(DiffusionPipeline):
    """Base of the two DiffusionRenderer command pipelines; ``KIND`` is "inverse" or "forward"."""

    KIND = ""

    def _setup(self, renderer, window: int | None, overlap: int, num_steps: int | None, info: dict | None,
               processing_size) -> None:
        """Register ``renderer`` (a DiffusionRendererPipeline of a ``KIND`` folder) and the call defaults: window /
        overlap in video frames (None window: the folder's frame count), steps (None: the folder's), processing
        size (None: the reference's rule)."""
        if getattr(getattr(renderer, "settings", None), "kind", None) != self.KIND:
            raise NeuralRenderError(f"{type(self).__name__} needs the sampler of a {self.KIND.upper()} "
                                    "DiffusionRenderer folder")
        self.register_modules(renderer=renderer)
        s = renderer.settings
        self.window, self.overlap = int(window or s.num_frames), int(overlap)
        if self.window < 1 or not 0 <= self.overlap < self.window:
            raise NeuralRenderError(f"need window >= 1 and 0 <= overlap < window, got {self.window}, {self.overlap}")
        self.num_steps = None if num_steps is None else int(num_steps)
        self.processing_size = processing_size
        self.native_size = int(min(s.height, s.width))
        self.info = {"source": "DiffusionRenderer", "kind": self.KIND, **dict(info or {})}

    @property
    def device(self) -> torch.device:
        return self.renderer.device

    def to(self, *args, **kwargs):
        self.renderer.to(*args, **kwargs)
        return self

    @property
    def is_trained(self) -> bool:
        """Released (or fine-tuned) weights: always True (a random test checkpoint cannot be told apart)."""
        return True

    @property
    def stride(self) -> int:
        return max(int(self.renderer.settings.size_multiple), int(self.renderer.size_multiple))

    def default_steps(self) -> int:
        return self.num_steps or int(self.renderer.settings.num_inference_steps)
