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
from diffusers.models.modeling_utils import ModelMixin

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


def read_lora(directory: str | os.PathLike) -> tuple:
    """(peft LoraConfig, state dict keyed without peft's ``base_model.model.`` prefix) of a LoRA folder written by
    :func:`save_lora` (or peft); missing or corrupt files raise NeuralRenderError naming the folder."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    root = Path(directory)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise NeuralRenderError(f"not a LoRA folder: needs {CONFIG_FILE} and {WEIGHTS_FILE}", root)
    try:
        config = LoraConfig.from_pretrained(os.fspath(root))
        state = load_file(os.fspath(root / WEIGHTS_FILE))
    except Exception as err:  # noqa: BLE001 - json / safetensors / peft errors at the file boundary
        raise NeuralRenderError(f"cannot read LoRA: {type(err).__name__}: {err}", root) from None
    return config, {k.removeprefix(_PREFIX): v for k, v in state.items()}


def apply_lora(backbone, config, state: dict, adapter_name: str = "default", freeze_base: bool = True,
               source: str | os.PathLike | None = None):
    """Set adapter ``adapter_name`` of the backbone to ``config`` / ``state`` (:func:`read_lora`), injecting it first
    if it does not exist; weights that do not match the backbone raise NeuralRenderError naming ``source``."""
    from peft import set_peft_model_state_dict

    if adapter_name not in lora_adapter_names(backbone):
        _inject(backbone, config, adapter_name, freeze_base)
    model = _model(backbone)
    expected = {k for k in model.state_dict() if f".{adapter_name}." in k and "lora_" in k}
    try:
        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    except RuntimeError as err:
        raise NeuralRenderError(f"LoRA weights do not fit this backbone: {err}", source) from None
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    missing = [k for k in getattr(result, "missing_keys", []) if k in expected]
    if unexpected or missing:
        raise NeuralRenderError(
            f"LoRA weights do not fit this backbone: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            source,
        )
    return backbone


def load_lora(backbone, directory: str | os.PathLike, adapter_name: str = "default", freeze_base: bool = True):
    """Load a LoRA folder written by :func:`save_lora` (or peft) into the backbone; returns the backbone.

    If the adapter does not exist yet it is injected with the saved config. Missing/corrupt files or weights
    that do not match the backbone's modules raise NeuralRenderError naming the folder.
    """
    config, state = read_lora(directory)
    return apply_lora(backbone, config, state, adapter_name, freeze_base, Path(directory))


class LoraAdapters(ModelMixin):
    """The LoRA adapters of a pipeline folder's ``lora/`` (one peft folder per adapter name), read but not attached.

    The pipeline component diffusers' loader reads with :meth:`from_pretrained` (a ``ModelMixin`` for that loader;
    it holds no parameters): the pipeline attaches the adapters to its backbone (:meth:`attach`) and keeps no
    reference; saving a pipeline writes the backbone's adapters again (:func:`save_lora`).
    adapters: {name: (LoraConfig, state dict)} (:func:`read_lora`); source: the folder, for messages.
    """

    def __init__(self, adapters: dict | None = None, source: str | os.PathLike | None = None):
        super().__init__()
        self.adapters = dict(adapters or {})
        self.source = source

    @property
    def names(self) -> list[str]:
        return sorted(self.adapters)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, names: list[str] | None = None,
                        **kwargs) -> LoraAdapters:
        """Read ``<folder>/<name>/`` for each of ``names`` (default: every subfolder, sorted); ``kwargs``: diffusers'
        loading options, ignored. A missing or bad folder raises NeuralRenderError naming it."""
        root = Path(pretrained_model_name_or_path)
        if not root.is_dir():
            raise NeuralRenderError("LoRA folder does not exist", root)
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if names is None else [str(n) for n in names]
        if not names:
            raise NeuralRenderError("no LoRA adapter folder in it", root)
        return cls({name: read_lora(root / name) for name in names}, root)

    def attach(self, backbone) -> None:
        """Inject every adapter into ``backbone`` with its weights (frozen base, as loaded models are used)."""
        for name in self.names:
            config, state = self.adapters[name]
            apply_lora(backbone, config, state, name, source=None if self.source is None else Path(self.source) / name)


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
