"""Build, load and save backbones. Real weights load from a LOCAL diffusers-format folder only (no hub access).

Folder layouts accepted by :func:`build_backbone` (``pretrained_dir``):
  * a diffusers pipeline folder: ``<dir>/unet/`` (SVD) or ``<dir>/transformer/`` (Wan) with config.json + weights;
  * a diffusers model folder: ``<dir>/config.json`` + ``diffusion_pytorch_model.safetensors``;
  * an adapter folder written by ``backbone.save_pretrained``: ``backbone.json`` (adapter settings incl. the
    added input channels) + the diffusers model in ``unet/`` or ``transformer/``.
Every failure at this boundary (missing folder, no config, not this model class, corrupt or mismatched
weights) raises NeuralRenderError naming the folder and what is wrong.

Adapter classes are found by kind in :mod:`.registry` (the adapters register themselves; this module never imports
them); ``VideoBackbone.save_pretrained`` / ``from_pretrained`` call :func:`save_backbone` / :func:`load_backbone`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone.registry import backbone_class, backbone_kinds

SETTINGS_FILE = "backbone.json"
_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
)


def tiny_svd_config() -> dict:
    """SVD UNet small enough to train on CPU in seconds (latents 4 channels, 16x16, 2-4 frames)."""
    return {
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "block_out_channels": (32, 64),
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 24,
        "layers_per_block": 1,
        "cross_attention_dim": 32,
        "transformer_layers_per_block": 1,
        "num_attention_heads": (2, 4),
        "num_frames": 4,
    }


def tiny_wan_config() -> dict:
    """Wan transformer: 2 layers, 2 heads x 16 dims, patch (1, 2, 2), 4 latent channels, 32-dim context."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 4,
        "out_channels": 4,
        "text_dim": 32,
        "freq_dim": 32,
        "ffn_dim": 64,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 64,
    }


def _model_class(kind: str):
    """The diffusers model class the adapter of ``kind`` wraps (NeuralRenderError for an unknown kind)."""
    import diffusers

    return getattr(diffusers, backbone_class(kind).MODEL_CLASS)


def _subfolder(kind: str) -> str:
    return backbone_class(kind).SUBFOLDER


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"cannot read JSON: {err}", path) from None
    if not isinstance(data, dict):
        raise NeuralRenderError("JSON is not an object", path)
    return data


def resolve_model_folder(directory: str | os.PathLike, subfolder: str) -> tuple[Path, str | None]:
    """Return (dir, subfolder or None) holding config.json + weights, or raise NeuralRenderError."""
    root = Path(directory)
    if not root.exists():
        raise NeuralRenderError("model folder does not exist", root)
    if not root.is_dir():
        raise NeuralRenderError("not a folder (expected a diffusers model folder)", root)
    if (root / subfolder / "config.json").is_file():
        return root, subfolder
    if (root / "config.json").is_file():
        return root, None
    raise NeuralRenderError(
        f"not a diffusers model folder: no config.json in it nor in its {subfolder}/ subfolder", root
    )


def load_diffusers_model(kind: str, directory: str | os.PathLike, subfolder: str | None = None):
    """Load the unmodified diffusers module of ``kind`` from a local folder (local_files_only, no hub)."""
    cls = _model_class(kind)
    root, sub = resolve_model_folder(directory, subfolder or _subfolder(kind))
    folder = root / sub if sub else root
    config = _read_json(folder / "config.json")
    class_name = config.get("_class_name")
    if class_name is not None and class_name != cls.__name__:
        raise NeuralRenderError(f"config.json describes a {class_name}, expected a {cls.__name__}", folder)
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise NeuralRenderError(f"no weights file (expected one of {list(_WEIGHT_FILES)})", folder)
    try:
        model = cls.from_pretrained(os.fspath(root), subfolder=sub, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - diffusers raises ValueError/OSError/RuntimeError/safetensors errors
        message = " ".join(str(err).split())
        if len(message) > 600:
            message = message[:600] + " ..."
        raise NeuralRenderError(f"cannot load {cls.__name__}: {type(err).__name__}: {message}", folder) from None
    _check_all_weights_loaded(model, folder)
    _own_memory(model)
    return model


@torch.no_grad()
def _own_memory(model: torch.nn.Module) -> None:
    """Give every parameter and buffer its own freshly allocated storage (one tensor at a time).

    diffusers leaves the loaded weights as views into the file's memory-mapped storage; on such memory the CPU
    kernels may take other code paths, and a reloaded model's outputs then differ from the saved model's by ~1e-6
    (measured on an AMD EPYC host). With its own copies a reloaded model computes bit-identically to the saved one.
    """
    for module in model.modules():
        for name, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            if tensor is not None:
                tensor.data = tensor.data.clone()


def _checkpoint_keys(folder: Path) -> set[str] | None:
    """Tensor names in the folder's safetensors checkpoint (single file or sharded index); None for .bin."""
    single = folder / "diffusion_pytorch_model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(os.fspath(single), framework="pt") as f:
            return set(f.keys())
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        return set(_read_json(index).get("weight_map", {}))
    return None


def _check_all_weights_loaded(model, folder: Path) -> None:
    """diffusers only WARNS when the config asks for weights the checkpoint lacks (and random-inits them) or
    the checkpoint holds weights the config has no place for; both mean config and weights do not match."""
    import re

    stored = _checkpoint_keys(folder)
    if stored is None:
        return
    wanted = set(model.state_dict())
    ignore = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    missing = sorted(wanted - stored)
    unexpected = sorted(k for k in stored - wanted if not any(p.search(k) for p in ignore))
    if missing or unexpected:
        raise NeuralRenderError(
            f"weights do not match config.json of {type(model).__name__}: {len(missing)} weights missing from the "
            f"checkpoint (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})",
            folder,
        )


def build_backbone(
    kind: str,
    config: dict | None = None,
    pretrained_dir: str | os.PathLike | None = None,
    cond_channels: int = 0,
    tiny: bool = False,
    seed: int | None = None,
    **adapter_options,
):
    """Build a :class:`VideoBackbone` adapter.

    kind: "svd" | "wan". config: diffusers constructor kwargs of the model (merged over the tiny config when
    ``tiny``); pretrained_dir: local folder (see module docstring), exclusive with ``config``/``tiny``.
    cond_channels: total condition channels concatenated to the noisy latent; 0 = the model's own (0 for
    text/tiny models, 4 for SVD img2vid, whatever a saved adapter has); more than the model's own expands
    the input projection with zero weights. seed: seeds a random init without touching the global RNG.
    adapter_options: ``autocast_dtype`` (both), ``added_time_ids`` (svd).
    """
    adapter_cls = backbone_class(kind)
    cond = int(cond_channels) if cond_channels else None
    if pretrained_dir is not None:
        if config is not None or tiny:
            raise NeuralRenderError("give either pretrained_dir or config/tiny, not both", pretrained_dir)
        if (Path(pretrained_dir) / SETTINGS_FILE).is_file():
            backbone = load_backbone(pretrained_dir, cond_channels=cond, **adapter_options)
            if backbone.kind != kind:
                raise NeuralRenderError(f"saved backbone is {backbone.kind!r}, asked for {kind!r}", pretrained_dir)
            return backbone
        model = load_diffusers_model(kind, pretrained_dir)
    else:
        if config is None and not tiny:
            raise NeuralRenderError(f"build_backbone({kind!r}): give config, tiny=True or pretrained_dir")
        cfg = dict(tiny_svd_config() if kind == "svd" else tiny_wan_config()) if tiny else {}
        cfg.update(config or {})
        cls = _model_class(kind)
        try:
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(int(seed))
                model = cls(**cfg)
        except (TypeError, ValueError, AssertionError) as err:
            raise NeuralRenderError(f"bad {cls.__name__} config {cfg}: {err}") from None
    try:
        return adapter_cls(model, cond_channels=cond, **adapter_options)
    except TypeError as err:
        raise NeuralRenderError(f"bad {kind} adapter options {sorted(adapter_options)}: {err}") from None


def _base_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Model weights without LoRA layers, keyed as in the plain diffusers module."""
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key or "lora_magnitude_vector" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value.detach().contiguous()
    return state


def save_backbone(backbone, directory: str | os.PathLike) -> None:
    """Write ``backbone.json`` + the diffusers model (config.json + safetensors) into ``directory`` atomically
    (``VideoBackbone.save_pretrained``).

    LoRA layers (see models/lora.py) are NOT saved here: the base weights are written with the plain module's
    keys; save adapters with ``save_lora``.
    """
    from safetensors.torch import save_file

    from neural_render.io.atomic import atomic_dir

    model = backbone.model
    settings = backbone.settings()
    has_lora = any("lora_" in name for name, _ in model.named_parameters())
    with atomic_dir(directory) as tmp:
        sub = os.path.join(tmp, settings["subfolder"])
        if has_lora:
            os.makedirs(sub)
            model.save_config(sub)
            save_file(_base_state_dict(model), os.path.join(sub, "diffusion_pytorch_model.safetensors"),
                      metadata={"format": "pt"})
        else:
            model.save_pretrained(sub, safe_serialization=True)
        with open(os.path.join(tmp, SETTINGS_FILE), "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=2, sort_keys=True)


def load_backbone(directory: str | os.PathLike, cond_channels: int | None = None, **overrides):
    """Load an adapter folder written by ``save_pretrained`` as the registered class of its kind
    (``VideoBackbone.from_pretrained``); ``overrides`` replace saved adapter settings."""
    root = Path(directory)
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise NeuralRenderError(f"no {SETTINGS_FILE} (not a folder written by backbone.save_pretrained)", root)
    settings = _read_json(settings_path)
    kind = settings.get("kind")
    if kind not in backbone_kinds():
        raise NeuralRenderError(f"{SETTINGS_FILE}: unknown kind {kind!r}", settings_path)
    model = load_diffusers_model(kind, root, settings.get("subfolder", _subfolder(kind)))
    base_in = settings.get("base_in_channels")
    if base_in is not None and not 0 < int(base_in) <= _input_channels(model, kind):
        raise NeuralRenderError(
            f"{SETTINGS_FILE}: base_in_channels {base_in} does not fit the model's {_input_channels(model, kind)} "
            "input channels",
            settings_path,
        )
    options = {"autocast_dtype": settings.get("autocast_dtype")}
    if kind == "svd":
        options["added_time_ids"] = settings.get("added_time_ids")
    options.update(overrides)
    try:
        return backbone_class(kind)(model, cond_channels=cond_channels, base_in_channels=base_in, **options)
    except TypeError as err:
        raise NeuralRenderError(f"bad adapter options {sorted(options)}: {err}", root) from None


def _input_channels(model, kind: str) -> int:
    return int((model.conv_in if kind == "svd" else model.patch_embedding).in_channels)
