"""DiffusionRenderer's released SVD checkpoints (inverse and forward folders) on unmodified diffusers classes.

- :mod:`.unet_context`: :class:`DiffusionRendererUNet`, diffusers' SVD UNet + pass/context table, per-level tokens
- :mod:`.env_encoder`: :class:`EnvEncoder`, env encodings -> one token map per UNet level
- :mod:`.lora`: the folder's ``lora/`` through peft
- :mod:`.checkpoint`: :func:`load_diffusion_renderer`, :func:`is_diffusion_renderer_folder`, the reference settings
- :mod:`.backbone`: :class:`DiffusionRendererBackbone`, the UNet behind the toolkit's VideoBackbone (fine-tuning)
- :mod:`.export`: :func:`export_folder`, a fine-tune written back in the same folder layout

Imported lazily (diffusers is heavy): ``from neural_render.models.diffusion_renderer import load_diffusion_renderer``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DiffusionRendererUNet": "unet_context", "PASS_IDS": "unet_context", "CONTEXT_MAX_NORM": "unet_context",
    "EnvEncoder": "env_encoder", "encode_env": "env_encoder",
    "apply_lora": "lora", "LoraMismatchError": "lora", "add_lora": "lora", "set_lora_scale": "lora",
    "DiffusionRendererBackbone": "backbone", "export_folder": "export", "checkpoint_kind": "checkpoint",
    "load_diffusion_renderer": "checkpoint", "is_diffusion_renderer_folder": "checkpoint",
    "DiffusionRendererCheckpoint": "checkpoint", "DiffusionRendererSettings": "checkpoint",
    "DiffusionRendererCheckpointError": "checkpoint",
}
__all__ = list(_EXPORTS)  # the lazily exported names


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
