"""Write a fine-tuned DiffusionRenderer checkpoint back in the SAME folder layout it was read from.

:func:`export_folder` writes, atomically (a temporary folder renamed into place):

* ``model_index.json``, ``scheduler/`` and ``vae/``: copied byte for byte from the source folder (never trained);
* ``unet/``: the source ``config.json`` byte for byte (``_class_name`` stays UNetCustomSpatioTemporalConditionModel)
  and, when the UNet's own weights trained (full fine-tune), ``diffusion_pytorch_model.safetensors`` with them
  under their original names; otherwise (LoRA fine-tune) the source weight files byte for byte;
* ``env_encoder/`` (forward): the same rule (written when it trained, else copied);
* ``lora/pytorch_lora_weights.safetensors`` when the UNet carries the LoRA adapter: its weights in the layout the
  released folders use (``unet.<module>.lora.down.weight`` / ``.lora.up.weight``), plus ``neural_render_lora.json``
  with the scale it was trained at (the loader's default for this folder); an untrained LoRA is copied;
* ``neural_render_training.json``: what was trained, from which folder, how many steps.

:func:`~neural_render.models.diffusion_renderer.checkpoint.load_diffusion_renderer` reads the result back (so do
the commands' ``--model DIR`` and the reference's own loaders, which ignore the two ``neural_render_*`` files).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.diffusion_renderer.checkpoint import TRAINING_INFO, WEIGHTS
from neural_render.models.diffusion_renderer.lora import (
    ADAPTER_NAME,
    LORA_FILE,
    LORA_SETTINGS,
    base_state_dict,
    lora_file_state,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _save(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in state.items()}, str(path))


def _copy_tree(source: Path, target: Path, skip_weights: bool = False) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()):
        if item.is_file() and not (skip_weights and item.name.startswith(WEIGHTS)):
            shutil.copy2(item, target / item.name)


def export_folder(target: str | os.PathLike, source: str | os.PathLike, unet: torch.nn.Module,
                  env_encoder: torch.nn.Module | None, unet_trained: bool, env_encoder_trained: bool,
                  lora_trained: bool, lora_scale: float, info: dict, dtype: str = "float32") -> Path:
    """Write the folder (module doc). unet / env_encoder: the live modules (EMA weights swapped in by the caller);
    *_trained: whether their weights changed; lora_scale: the scale the LoRA ran at in training; info: recorded in
    ``neural_render_training.json``; dtype: of the written weights ("float32", "float16", "bfloat16")."""
    from peft.tuners.lora import LoraLayer

    from neural_render.io.atomic import atomic_dir

    source, target = Path(source), Path(target)
    if dtype not in DTYPES:
        raise NeuralRenderError(f"export dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if source.resolve() == target.resolve():
        raise NeuralRenderError("the export folder must differ from the source checkpoint folder", target)
    torch_dtype = DTYPES[dtype]
    has_lora = any(isinstance(m, LoraLayer) and ADAPTER_NAME in m.lora_A for m in unet.modules())
    with atomic_dir(target) as tmp:
        out = Path(tmp)
        shutil.copy2(source / "model_index.json", out / "model_index.json")
        for sub in ("scheduler", "vae"):
            _copy_tree(source / sub, out / sub)
        _copy_tree(source / "unet", out / "unet", skip_weights=unet_trained)
        if unet_trained:
            _save(base_state_dict(unet), out / "unet" / WEIGHTS, torch_dtype)
        if env_encoder is not None:
            _copy_tree(source / "env_encoder", out / "env_encoder", skip_weights=env_encoder_trained)
            if env_encoder_trained:
                _save(env_encoder.state_dict(), out / "env_encoder" / WEIGHTS, torch_dtype)
        if has_lora and lora_trained:
            _save(lora_file_state(unet), out / "lora" / LORA_FILE, torch_dtype)
            (out / "lora" / LORA_SETTINGS).write_text(json.dumps({"lora_scale": float(lora_scale)}, indent=1))
        elif has_lora:
            _copy_tree(source / "lora", out / "lora")
        (out / TRAINING_INFO).write_text(json.dumps({"source": str(source.resolve()), **info}, indent=1, default=str))
    return target
