"""Video diffusion backbones behind one interface (:class:`VideoBackbone`): SVD UNet and Wan transformer adapters.

Importing this package is cheap (torch only); diffusers is imported when a backbone is built or loaded.
"""

from neural_render.models.backbone.base import FrameRule, VideoBackbone
from neural_render.models.backbone.channels import expand_input_channels
from neural_render.models.backbone.loading import (
    build_backbone,
    load_backbone,
    load_diffusers_model,
    tiny_svd_config,
    tiny_wan_config,
)

__all__ = [
    "FrameRule",
    "VideoBackbone",
    "build_backbone",
    "expand_input_channels",
    "load_backbone",
    "load_diffusers_model",
    "tiny_svd_config",
    "tiny_wan_config",
]
