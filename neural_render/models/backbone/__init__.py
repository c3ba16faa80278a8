"""Video diffusion backbones behind one interface (:class:`VideoBackbone`): SVD UNet and Wan transformer adapters.

Importing this package imports the adapters (so they register their kinds, :mod:`.registry`) and diffusers'
``ModelMixin`` (their base); the diffusers UNet / transformer classes are imported when a backbone is built or loaded.
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
from neural_render.models.backbone.registry import backbone_class, backbone_kinds
from neural_render.models.backbone.svd import SVDBackbone
from neural_render.models.backbone.wan import WanBackbone

__all__ = [
    "FrameRule",
    "SVDBackbone",
    "VideoBackbone",
    "WanBackbone",
    "backbone_class",
    "backbone_kinds",
    "build_backbone",
    "expand_input_channels",
    "load_backbone",
    "load_diffusers_model",
    "tiny_svd_config",
    "tiny_wan_config",
]
