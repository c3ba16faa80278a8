"""A DiffusionRenderer ``lora/pytorch_lora_weights.safetensors`` onto our UNet, through peft.

The forward renderer ships a "real" LoRA, recommended at scale 0.25. The file is what diffusers' LoRA saving
writes: keys ``unet.<module path>.lora.down.weight`` / ``.lora.up.weight`` (diffusers names) or
``.lora_A.weight`` / ``.lora_B.weight`` (peft names), with or without the ``unet.`` prefix, and no alpha entries.
The reference loads it with diffusers' ``load_lora_weights``, which gives every layer ``lora_alpha`` = the first
layer's rank (so alpha / r = 1 when all ranks agree) and multiplies by the run-time scale. Here the same adapter
is injected with ``peft.inject_adapter_in_model`` (diffusers' SVD UNet has no ``add_adapter``), its weights set
with ``peft.set_peft_model_state_dict``, and the scale folded into each layer's ``scaling`` (``set_scale``).
A file naming modules the UNet lacks, or with shapes that do not fit, is refused: it is a LoRA for another model.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import torch
from torch import nn

from neural_render.errors import NeuralRenderError

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"
#: beside LORA_FILE in a folder this toolkit's fine-tuning exported: {"lora_scale": s, ...}, the scale the LoRA was
#: trained at (the loader's default for that folder; the reference ignores the file and takes its own scale)
LORA_SETTINGS = "neural_render_lora.json"
ADAPTER_NAME = "real-lora"
_SUFFIXES = {  # file suffix -> (peft matrix, role)
    ".lora.down.weight": "lora_A", ".lora.up.weight": "lora_B",
    ".lora_linear_layer.down.weight": "lora_A", ".lora_linear_layer.up.weight": "lora_B",
    ".lora_A.weight": "lora_A", ".lora_B.weight": "lora_B",
}


class LoraMismatchError(NeuralRenderError):
    """The LoRA file does not belong to this UNet (or is in a form this loader does not read)."""


def read_lora(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """module path -> {"lora_A": (r, in[, kh, kw]), "lora_B": (out, r[, 1, 1])}, in the file's order."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        raw = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise LoraMismatchError(f"cannot read the LoRA weights: {e}", path) from None
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in raw.items():
        name = key.removeprefix("unet.")
        if name.startswith("text_encoder"):
            raise LoraMismatchError(f"'{key}': a text-encoder LoRA (DiffusionRenderer has no text encoder)", path)
        for suffix, role in _SUFFIXES.items():
            if name.endswith(suffix):
                layers.setdefault(name[: -len(suffix)], {})[role] = value
                break
        else:
            raise LoraMismatchError(f"'{key}' is not a LoRA down/up (A/B) weight this loader reads", path)
    for module, pair in layers.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise LoraMismatchError(f"'{module}' has only {sorted(pair)}", path)
        if pair["lora_A"].shape[0] != pair["lora_B"].shape[1]:
            raise LoraMismatchError(f"'{module}': down rank {pair['lora_A'].shape[0]} != up rank "
                                    f"{pair['lora_B'].shape[1]}", path)
    if not layers:
        raise LoraMismatchError("no LoRA weights in the file", path)
    return layers


def _check_fits(model: nn.Module, layers: dict, path: Path) -> None:
    modules = dict(model.named_modules())
    for name, pair in layers.items():
        target = modules.get(name)
        if target is None:
            raise LoraMismatchError(f"the UNet has no module '{name}': a LoRA for another model", path)
        a, b = pair["lora_A"], pair["lora_B"]
        if isinstance(target, nn.Linear):
            fits = a.dim() == 2 and a.shape[1] == target.in_features and b.shape[0] == target.out_features
        elif isinstance(target, nn.Conv2d):
            fits = a.dim() == 4 and a.shape[1] == target.in_channels and b.shape[0] == target.out_channels
        else:
            raise LoraMismatchError(f"'{name}' is a {type(target).__name__}, not a Linear or Conv2d layer", path)
        if not fits:
            raise LoraMismatchError(f"'{name}': LoRA shapes {tuple(a.shape)} / {tuple(b.shape)} do not fit the "
                                    f"layer ({target}): a LoRA for another model", path)


def apply_lora(model: nn.Module, path: str | Path, scale: float, adapter_name: str = ADAPTER_NAME) -> int:
    """Inject the file's LoRA into ``model`` at ``scale`` (a layer's output += scale * alpha/r * B A x).

    Returns the number of layers it adapts; raises LoraMismatchError (naming the file) when it does not fit."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    path = Path(path)
    layers = read_lora(path)
    _check_fits(model, layers, path)
    ranks = {name: int(pair["lora_A"].shape[0]) for name, pair in layers.items()}
    rank = collections.Counter(ranks.values()).most_common(1)[0][0]
    alpha = next(iter(ranks.values()))  # diffusers: lora_alpha = the first layer's rank when the file has none
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(layers), init_lora_weights=False,
                        rank_pattern={n: r for n, r in ranks.items() if r != rank})
    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    state = {f"{name}.{role}.weight": w for name, pair in layers.items() for role, w in pair.items()}
    result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise LoraMismatchError(f"peft did not place {len(unexpected)} weights, e.g. {unexpected[:3]}", path)
    count = set_lora_scale(model, scale, adapter_name)
    if count != len(layers):
        raise LoraMismatchError(f"{count} LoRA layers injected for {len(layers)} in the file", path)
    log.info("LoRA %s: %d layers, rank %d, scale %g", path, count, rank, scale)
    return count


def set_lora_scale(model: nn.Module, scale: float, adapter_name: str = ADAPTER_NAME) -> int:
    """Set the run-time scale of the adapter ``adapter_name`` on every LoRA layer of ``model`` (0 turns it off);
    returns the number of layers changed (0 when the model has no such adapter)."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and adapter_name in module.scaling:
            module.set_scale(adapter_name, float(scale))
            count += 1
    return count


#: layers a new LoRA adapts by default: every attention's q / k / v / output projection (spatial and temporal), the
#: layers the released "real" LoRA adapts
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def add_lora(model: nn.Module, rank: int, scale: float, targets=DEFAULT_TARGETS,
             adapter_name: str = ADAPTER_NAME) -> int:
    """Inject a NEW trainable LoRA (peft; A random, B zero, so the model is unchanged; alpha = rank) into
    ``model`` at run-time ``scale``; returns the number of adapted layers."""
    from peft import LoraConfig, inject_adapter_in_model

    if int(rank) < 1:
        raise LoraMismatchError(f"LoRA rank must be >= 1, got {rank}")
    config = LoraConfig(r=int(rank), lora_alpha=int(rank), target_modules=list(targets), init_lora_weights=True)
    try:
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    except ValueError as e:  # peft: no module matched the targets
        raise LoraMismatchError(f"no LoRA target {list(targets)} found in the model ({e})") from None
    return set_scale_checked(model, scale, adapter_name)


def set_scale_checked(model: nn.Module, scale: float, adapter_name: str = ADAPTER_NAME) -> int:
    count = set_lora_scale(model, scale, adapter_name)
    if count == 0:
        raise LoraMismatchError(f"the model has no LoRA adapter {adapter_name!r}")
    return count


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter name of a peft-adapted model belongs to a LoRA adapter."""
    return ".lora_A." in name or ".lora_B." in name or name.startswith(("lora_A.", "lora_B."))


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's own weights under their original names (peft's ``.base_layer`` removed, LoRA weights left out)."""
    out = {}
    for key, value in model.state_dict().items():
        if is_lora_parameter(key) or ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


def lora_file_state(model: nn.Module, adapter_name: str = ADAPTER_NAME) -> dict[str, torch.Tensor]:
    """The adapter's weights in the layout DiffusionRenderer's folders use (``unet.<module>.lora.down.weight`` /
    ``.lora.up.weight``, what diffusers' LoRA saving writes), readable by :func:`read_lora` and by the reference."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            out[f"unet.{name}.lora.down.weight"] = module.lora_A[adapter_name].weight.detach()
            out[f"unet.{name}.lora.up.weight"] = module.lora_B[adapter_name].weight.detach()
    if not out:
        raise LoraMismatchError(f"the model has no LoRA adapter {adapter_name!r}")
    return out
