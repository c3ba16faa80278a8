"""Recognise and load a DiffusionRenderer checkpoint folder (inverse or forward) into our modules.

A folder (diffusers layout, ``model_index.json`` naming ``RGBXVideoDiffusionPipeline``)::

    unet/        config.json (UNetCustomSpatioTemporalConditionModel) + diffusion_pytorch_model.safetensors
    vae/         AutoencoderKLTemporalDecoder
    scheduler/   EulerDiscreteScheduler (Stable Video Diffusion's: Karras sigmas, continuous timesteps, v-prediction)
    env_encoder/ EnvEncoder                                       forward only
    lora/        pytorch_lora_weights.safetensors ("real" LoRA)   forward only, optional

becomes :class:`DiffusionRendererCheckpoint`: our :class:`DiffusionRendererUNet` (diffusers' SVD UNet plus the
context table and per-level tokens), diffusers' own ``AutoencoderKLTemporalDecoder`` and
``EulerDiscreteScheduler``, our :class:`EnvEncoder`, the LoRA through peft, and :class:`DiffusionRendererSettings`
(the reference inference scripts' preprocessing and sampler settings, which are not stored in the folder).

Bad input raises :class:`DiffusionRendererCheckpointError` (a NeuralRenderError: exit 2 in the CLI) naming the
folder: a missing ``unet/``, unknown config keys, a VAE or scheduler of another kind, weights that do not fit,
a LoRA for another model.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from pathlib import Path

import torch

from neural_render.errors import NeuralRenderError

log = logging.getLogger(__name__)

PIPELINE_CLASS = "RGBXVideoDiffusionPipeline"
UNET_CLASSES = ("UNetCustomSpatioTemporalConditionModel",)
VAE_CLASS = "AutoencoderKLTemporalDecoder"
SCHEDULER_CLASS = "EulerDiscreteScheduler"
ENV_ENCODER_CLASS = "EnvEncoder"
WEIGHTS = "diffusion_pytorch_model.safetensors"
#: what a fine-tune of this toolkit writes beside the DiffusionRenderer layout (models/diffusion_renderer/export.py)
TRAINING_INFO = "neural_render_training.json"
#: the reference's recommended scale of the forward folder's "real" LoRA
DEFAULT_LORA_SCALE = 0.25
#: the forward renderer's G-buffer latents after the noise, in the reference forward config's order
FORWARD_GBUFFERS = ("basecolor", "normal", "depth", "roughness", "metallic")


class DiffusionRendererCheckpointError(NeuralRenderError):
    """A DiffusionRenderer folder that cannot be loaded; ``path`` names the folder (or file) and why."""


@dataclasses.dataclass(frozen=True)
class DiffusionRendererSettings:
    """The reference inference scripts' settings for one checkpoint kind (none of them is stored in the folder).

    Inputs are images in [0, 1] (8-bit frames / 255, the values the model was trained on), mapped to [-1, 1]
    (x * 2 - 1) before the VAE; G-buffer and RGB latents are ``latent_dist.mode()``, multiplied by the VAE's
    ``scaling_factor`` only when ``scale_cond_latents`` (forward). Env encodings, per frame and in camera space,
    at ``env_resolution``: LDR = sRGB(Reinhard(x, max 16)) clamped to [0, 1], LOG = sRGB(log1p(x) / log1p(10000))
    clamped, DIR = direction * 0.5 + 0.5. Frame sizes: ``size_multiple`` px (the reference resizes to 512x512).
    Sampler: Euler (the folder's scheduler) with ``timestep_spacing``, ``num_inference_steps`` steps; the inverse
    run has no guidance, the forward one classifier-free guidance at ``guidance_scale`` with zero G-buffer
    latents and zero env tokens as the unconditional input. SVD micro-conditioning ``added_time_ids`` =
    (fps - 1, motion_bucket_id, noise_aug_strength). Frames decode ``decode_chunk_size`` at a time (the
    temporal decoder sees one chunk). Weights run in float16 in the reference.
    """

    kind: str
    num_inference_steps: int = 20
    num_frames: int = 24
    height: int = 512
    width: int = 512
    size_multiple: int = 64
    decode_chunk_size: int = 8
    guidance_scale: float = 1.0
    timestep_spacing: str | None = None
    scale_cond_latents: bool = False
    lora_scale: float = 0.0
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.0
    env_resolution: tuple[int, int] = (512, 512)
    env_labels: tuple[str, ...] = ()
    gbuffers: tuple[str, ...] = ()
    reference_dtype: str = "float16"

    def added_time_ids(self, batch: int) -> torch.Tensor:
        """(batch, 3) float32: SVD's micro-conditioning as the reference pipeline builds it."""
        ids = [float(self.fps - 1), float(self.motion_bucket_id), float(self.noise_aug_strength)]
        return torch.tensor([ids] * batch, dtype=torch.float32)


@dataclasses.dataclass
class DiffusionRendererCheckpoint:
    """A loaded folder: modules (eval mode, ``dtype``), settings, and how many LoRA layers were applied."""

    folder: Path
    kind: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    env_encoder: torch.nn.Module | None
    settings: DiffusionRendererSettings
    lora_layers: int = 0


def _read_json(path: Path, folder: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DiffusionRendererCheckpointError(f"missing {path.relative_to(folder)}", folder) from None
    except (OSError, ValueError) as e:
        raise DiffusionRendererCheckpointError(f"{path.relative_to(folder)} is not readable JSON ({e})",
                                               folder) from None
    if not isinstance(data, dict):
        raise DiffusionRendererCheckpointError(f"{path.relative_to(folder)} is not a JSON object", folder)
    return data


def is_diffusion_renderer_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder whose model_index.json names DiffusionRenderer's pipeline."""
    index = Path(path) / "model_index.json"
    try:
        return json.loads(index.read_text()).get("_class_name") == PIPELINE_CLASS
    except (OSError, ValueError, AttributeError):
        return False


def _kind_of(folder: Path, index: dict) -> str:
    env_entry = index.get("env_encoder")
    forward = (folder / "env_encoder").is_dir() or (isinstance(env_entry, list) and env_entry[:1] != [None])
    return "forward" if forward else "inverse"


def _recorded_lora_scale(folder: Path) -> float:
    """The LoRA scale a fine-tune of this toolkit recorded in lora/ (``LORA_SETTINGS``), else the reference's 0.25."""
    from neural_render.models.diffusion_renderer.lora import LORA_SETTINGS

    path = folder / "lora" / LORA_SETTINGS
    if not path.is_file():
        return DEFAULT_LORA_SCALE
    scale = _read_json(path, folder).get("lora_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 <= float(scale) <= 16.0:
        raise DiffusionRendererCheckpointError(f"lora/{LORA_SETTINGS}: lora_scale must be a number in [0, 16], "
                                               f"got {scale!r}", folder)
    return float(scale)


def checkpoint_kind(folder: str | os.PathLike) -> str:
    """"inverse" or "forward" for a DiffusionRenderer folder (from model_index.json and env_encoder/, no weights
    read); DiffusionRendererCheckpointError naming the folder when it is not one."""
    return _checked_index(Path(folder))[1]


def _checked_index(folder: Path) -> tuple[dict, str]:
    """(model_index.json, "inverse" | "forward") of a DiffusionRenderer folder; DiffusionRendererCheckpointError
    naming the folder when it is not one."""
    if not folder.is_dir():
        raise DiffusionRendererCheckpointError("not a folder", folder)
    index = _read_json(folder / "model_index.json", folder)
    if index.get("_class_name") != PIPELINE_CLASS:
        raise DiffusionRendererCheckpointError(
            f"model_index.json names {index.get('_class_name')!r}, not {PIPELINE_CLASS}", folder)
    return index, _kind_of(folder, index)


def _config(folder: Path, sub: str, classes: tuple[str, ...], allowed: set[str]) -> dict:
    """sub/config.json with its class checked and its keys known; returns the init kwargs."""
    if not (folder / sub).is_dir():
        raise DiffusionRendererCheckpointError(f"missing {sub}/ (a DiffusionRenderer folder has unet/, vae/, "
                                               "scheduler/ and, for the forward renderer, env_encoder/)", folder)
    name = "scheduler_config.json" if sub == "scheduler" else "config.json"
    cfg = _read_json(folder / sub / name, folder)
    cls = cfg.get("_class_name")
    if cls not in classes:
        raise DiffusionRendererCheckpointError(
            f"{sub}/ holds a {cls or 'model of unnamed class'}, expected {' or '.join(classes)}", folder)
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in allowed)
    if unknown:
        raise DiffusionRendererCheckpointError(f"{sub}/{name}: unknown config keys {unknown}", folder)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def _init_keys(cls) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")}


def _build(cls, kwargs: dict, folder: Path, sub: str):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise DiffusionRendererCheckpointError(f"{sub}/config.json describes no buildable model: {e}",
                                               folder) from None


def _state_dict(folder: Path, sub: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    base = folder / sub
    index = base / (WEIGHTS + ".index.json")
    files = ([base / WEIGHTS] if (base / WEIGHTS).is_file()
             else sorted({base / f for f in _read_json(index, folder).get("weight_map", {}).values()})
             if index.is_file() else [])
    if not files:
        found = sorted(p.name for p in base.iterdir() if p.is_file())
        raise DiffusionRendererCheckpointError(f"{sub}/ has no {WEIGHTS} (safetensors only; found {found})", folder)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (OSError, SafetensorError) as e:
            raise DiffusionRendererCheckpointError(f"{f.relative_to(folder)}: {e}", folder) from None
    return state


def _load_weights(model: torch.nn.Module, folder: Path, sub: str) -> None:
    state = _state_dict(folder, sub)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {keys[:3]}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise DiffusionRendererCheckpointError(f"{sub}/ weights do not fit its config: " + "; ".join(parts), folder)
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(state[key])


def _scheduler(folder: Path, kind: str):
    from diffusers import EulerDiscreteScheduler

    allowed = _init_keys(EulerDiscreteScheduler) | {"clip_sample", "set_alpha_to_one", "skip_prk_steps"}
    cfg = _config(folder, "scheduler", (SCHEDULER_CLASS,), allowed)
    scheduler = EulerDiscreteScheduler.from_config(cfg)
    if kind == "forward":  # the reference forward script switches the spacing after loading
        scheduler.register_to_config(timestep_spacing="trailing")
    return scheduler


def load_diffusion_renderer(
    folder: str | os.PathLike,
    lora: bool | None = None,
    lora_scale: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> DiffusionRendererCheckpoint:
    """Load an inverse or forward DiffusionRenderer folder.

    lora: None applies ``lora/`` when present (as the reference does), True requires it, False skips it.
    lora_scale: default 0.25 (the reference's recommendation), or the scale a fine-tune of this toolkit trained its
    LoRA at (``lora/neural_render_lora.json``). dtype / device: for every module (float32 default).
    """
    from diffusers import AutoencoderKLTemporalDecoder

    from neural_render.models.diffusion_renderer.env_encoder import EnvEncoder
    from neural_render.models.diffusion_renderer.lora import LORA_FILE, apply_lora
    from neural_render.models.diffusion_renderer.unet_context import (
        DiffusionRendererUNet,
    )

    folder = Path(folder)
    index, kind = _checked_index(folder)
    forward = kind == "forward"

    unet = _build(DiffusionRendererUNet, _config(folder, "unet", UNET_CLASSES, _init_keys(DiffusionRendererUNet)),
                  folder, "unet")
    vae = _build(AutoencoderKLTemporalDecoder,
                 _config(folder, "vae", (VAE_CLASS,), _init_keys(AutoencoderKLTemporalDecoder)), folder, "vae")
    _load_weights(unet, folder, "unet")
    _load_weights(vae, folder, "vae")
    env_encoder = None
    if forward:
        env_encoder = _build(EnvEncoder, _config(folder, "env_encoder", (ENV_ENCODER_CLASS,),
                                                 _init_keys(EnvEncoder)), folder, "env_encoder")
        _load_weights(env_encoder, folder, "env_encoder")
    scheduler = _scheduler(folder, kind)

    latent = int(vae.config.latent_channels)
    expected = latent * (1 + (len(FORWARD_GBUFFERS) if forward else 1))
    if unet.config.in_channels != expected:
        raise DiffusionRendererCheckpointError(
            f"unet in_channels {unet.config.in_channels} does not fit a {kind} renderer on a {latent}-channel VAE "
            f"(expected {expected})", folder)
    if forward:
        env_width = env_encoder.config.in_channels
        want = latent * len(env_encoder.config.in_labels) if env_encoder.config.latent_encoder else None
        if want is not None and env_width != want:
            raise DiffusionRendererCheckpointError(
                f"env_encoder in_channels {env_width} != {len(env_encoder.config.in_labels)} encodings x "
                f"{latent} latent channels", folder)
        if not unet.config.multi_res_encoder_hidden_states:
            raise DiffusionRendererCheckpointError("a forward unet must take per-level env tokens "
                                                   "(multi_res_encoder_hidden_states)", folder)

    settings = DiffusionRendererSettings(
        kind=kind, guidance_scale=1.2 if forward else 1.0, scale_cond_latents=forward,
        timestep_spacing=scheduler.config.timestep_spacing,
        lora_scale=_recorded_lora_scale(folder) if lora_scale is None else float(lora_scale),
        env_labels=tuple(env_encoder.config.in_labels) if forward else (),
        gbuffers=FORWARD_GBUFFERS if forward else ())
    layers = 0
    lora_path = folder / "lora" / LORA_FILE
    if lora and not lora_path.is_file():
        raise DiffusionRendererCheckpointError(f"no lora/{LORA_FILE}", folder)
    if lora is not False and lora_path.is_file():
        layers = apply_lora(unet, lora_path, settings.lora_scale)
    else:
        settings = dataclasses.replace(settings, lora_scale=0.0)
    modules = [m for m in (unet, vae, env_encoder) if m is not None]
    for m in modules:  # nn.Module.to: ModelMixin.to would warn about fp32-kept modules these classes do not have
        torch.nn.Module.to(m, device=device, dtype=dtype).eval()
    log.info("DiffusionRenderer %s checkpoint %s (LoRA layers: %d)", kind, folder, layers)
    return DiffusionRendererCheckpoint(folder=folder, kind=kind, unet=unet, vae=vae, scheduler=scheduler,
                                       env_encoder=env_encoder, settings=settings, lora_layers=layers)
