"""Tensor dataclasses shared by every module: G-buffers, env maps, cameras (see each module for conventions)."""

from neural_render.types.camera import Camera, intrinsics_from_fov, look_at, to_mitsuba_to_world
from neural_render.types.envmap import EnvMap
from neural_render.types.gbuffer import (
    PASS_CHANNELS,
    PREDICTED_PASSES,
    GBuffer,
    composite_nearest,
    depth_scale_of,
    pack_pass,
    unpack_pass,
)

__all__ = ["Camera", "EnvMap", "GBuffer", "PASS_CHANNELS", "PREDICTED_PASSES", "composite_nearest", "depth_scale_of",
           "intrinsics_from_fov", "look_at", "pack_pass", "to_mitsuba_to_world", "unpack_pass"]
