"""LoRA on either backbone through peft (``peft.inject_adapter_in_model``, which also works on the SVD UNet
that has no ``add_adapter``).

Saved layout (peft's, loadable by ``peft.PeftModel.from_pretrained`` on the bare diffusers module):
    <dir>/adapter_config.json          peft LoraConfig
    <dir>/adapter_model.safetensors    keys ``base_model.model.<module path>.lora_A.weight`` / ``lora_B.weight``
A freshly added LoRA has zero B matrices, so the backbone's output is unchanged until it is trained.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from neural_render.errors import NeuralRenderError

_PREFIX = "base_model.model."
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

#: attention q/k/v/out and feed-forward linears per backbone kind (suffix match, peft semantics)
DEFAULT_TARGETS = {
    "svd": ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"],
    "wan": ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"],
}


def _model(backbone) -> torch.nn.Module:
    model = getattr(backbone, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise NeuralRenderError(f"expected a VideoBackbone, got {type(backbone).__name__}")
    return model


def _lora_layers(backbone):
    from peft.tuners.lora import LoraLayer

    return [m for m in _model(backbone).modules() if isinstance(m, LoraLayer)]


def lora_adapter_names(backbone) -> list[str]:
    """Names of the LoRA adapters injected into the backbone (empty if none)."""
    return sorted(getattr(_model(backbone), "peft_config", {}) or {})


def add_lora(
    backbone,
    rank: int,
    alpha: float | None = None,
    target_modules: list[str] | str | None = None,
    adapter_name: str = "default",
    dropout: float = 0.0,
    freeze_base: bool = True,
):
    """Inject a LoRA adapter (B zero-initialised) into the backbone's diffusers module; returns the backbone.

    rank: r > 0. alpha: lora_alpha (default = rank, i.e. scale 1). target_modules: peft target names
    (suffix match) or regex; default :data:`DEFAULT_TARGETS` for the backbone kind. freeze_base: peft leaves
    only LoRA weights trainable; False restores the previous requires_grad of the other parameters.
    """
    from peft import LoraConfig

    if int(rank) <= 0:
        raise NeuralRenderError(f"LoRA rank must be > 0, got {rank}")
    if adapter_name in lora_adapter_names(backbone):
        raise NeuralRenderError(f"LoRA adapter {adapter_name!r} already exists")
    targets = target_modules if target_modules is not None else DEFAULT_TARGETS.get(backbone.kind)
    if not targets:
        raise NeuralRenderError(f"no default LoRA targets for backbone kind {backbone.kind!r}; pass target_modules")
    config = LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha if alpha is not None else rank),
        target_modules=targets,
        lora_dropout=float(dropout),
        init_lora_weights=True,
    )
    _inject(backbone, config, adapter_name, freeze_base)
    return backbone


def _inject(backbone, config, adapter_name: str, freeze_base: bool) -> None:
    from peft import inject_adapter_in_model

    model = _model(backbone)
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        inject_adapter_in_model(config, model, adapter_name=adapter_name)
    except ValueError as err:
        raise NeuralRenderError(f"cannot add LoRA to {backbone.kind} backbone: {err}") from None
    if not freeze_base:
        for name, p in model.named_parameters():
            key = name.replace(".base_layer.", ".")
            if "lora_" not in name and before.get(key, before.get(name, False)):
                p.requires_grad_(True)


def lora_state_dict(backbone, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """LoRA weights of one adapter, keyed as peft saves them (``base_model.model.<path>.lora_A.weight``)."""
    from peft import get_peft_model_state_dict

    if adapter_name not in lora_adapter_names(backbone):
        raise NeuralRenderError(f"backbone has no LoRA adapter {adapter_name!r} (has {lora_adapter_names(backbone)})")
    state = get_peft_model_state_dict(_model(backbone), adapter_name=adapter_name)
    return {_PREFIX + k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_lora(backbone, directory: str | os.PathLike, adapter_name: str = "default") -> None:
    """Write adapter_config.json + adapter_model.safetensors into ``directory`` (atomically, as one folder)."""
    from safetensors.torch import save_file

    from neural_render.io.atomic import atomic_dir

    state = lora_state_dict(backbone, adapter_name)
    config = _model(backbone).peft_config[adapter_name]
    with atomic_dir(directory) as tmp:
        config.save_pretrained(tmp)
        save_file(state, os.path.join(tmp, WEIGHTS_FILE), metadata={"format": "pt", "backbone": backbone.kind})


def load_lora(backbone, directory: str | os.PathLike, adapter_name: str = "default", freeze_base: bool = True):
    """Load a LoRA folder written by :func:`save_lora` (or peft) into the backbone; returns the backbone.

    If the adapter does not exist yet it is injected with the saved config. Missing/corrupt files or weights
    that do not match the backbone's modules raise NeuralRenderError naming the folder.
    """
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    root = Path(directory)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise NeuralRenderError(f"not a LoRA folder: needs {CONFIG_FILE} and {WEIGHTS_FILE}", root)
    try:
        config = LoraConfig.from_pretrained(os.fspath(root))
        state = load_file(os.fspath(root / WEIGHTS_FILE))
    except Exception as err:  # noqa: BLE001 - json / safetensors / peft errors at the file boundary
        raise NeuralRenderError(f"cannot read LoRA: {type(err).__name__}: {err}", root) from None
    state = {k.removeprefix(_PREFIX): v for k, v in state.items()}
    if adapter_name not in lora_adapter_names(backbone):
        _inject(backbone, config, adapter_name, freeze_base)
    model = _model(backbone)
    expected = {k for k in model.state_dict() if f".{adapter_name}." in k and "lora_" in k}
    try:
        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    except RuntimeError as err:
        raise NeuralRenderError(f"LoRA weights do not fit this backbone: {err}", root) from None
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    missing = [k for k in getattr(result, "missing_keys", []) if k in expected]
    if unexpected or missing:
        raise NeuralRenderError(
            f"LoRA weights do not fit this backbone: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            root,
        )
    return backbone


def set_lora_scale(backbone, scale: float, adapter_name: str | None = None) -> None:
    """Scale LoRA contributions: scaling = scale * alpha / r (absolute, not cumulative). 0 == disabled output."""
    names = [adapter_name] if adapter_name else lora_adapter_names(backbone)
    layers = _lora_layers(backbone)
    if not layers:
        raise NeuralRenderError("backbone has no LoRA layers (call add_lora or load_lora first)")
    for layer in layers:
        for name in names:
            layer.set_scale(name, float(scale))


def enable_lora(backbone) -> None:
    """Turn LoRA contributions back on (after :func:`disable_lora`)."""
    for layer in _lora_layers(backbone):
        layer.enable_adapters(True)


def disable_lora(backbone) -> None:
    """Bypass all LoRA layers: outputs equal the base model's."""
    for layer in _lora_layers(backbone):
        layer.enable_adapters(False)
