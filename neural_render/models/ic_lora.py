"""RealMaster IC-LoRA: in-context conditioning of a video backbone on a clean reference clip, plus a peft LoRA.

Token layout. The backbone gets ONE latent sequence of ``2 T`` frames along the frame axis (the project layout
(B, 2T, C, h, w)): frames ``[0, T)`` are the REFERENCE (the rendered clip's latents), frames ``[T, 2T)`` the TARGET
(the noisy latents to denoise). Inside :func:`in_context` both halves get the SAME spatio-temporal positions, so
reference frame ``i`` and target frame ``i`` sit at the same place in space-time and differ only in content and
timestep. Training and sampling go through the one :class:`~neural_render.models.denoiser.Denoiser` with
``clean_frames`` = the reference half: those frames are given un-noised (sigma 0 -> flow timestep 0 per token,
``c_in`` = 1, x_t = x0 exactly) and are excluded from the loss (weight 0), so only the target is learned.

How positions are shared, without forking diffusers (hooks on unmodified modules; no-ops outside
:func:`in_context`):

* Wan (``WanTransformer3DModel``): rotary positions come from ``transformer.rope(hidden_states)``, called once per
  forward on the (B, C, F, H, W) input before patchifying; it returns (cos, sin), each (1, F' h' w', 1, D) in
  frame-major token order, where frame f' uses row f' of the temporal frequency table. A forward hook replaces the
  output by its first half repeated twice, which is EXACTLY the RoPE of a ``T``-frame clip given to both halves
  (the rows for frames f' and f' + T' become the rows of f'). Needs ``T`` divisible by the temporal patch.
  Per-token timesteps (reference 0, target t) use the adapter's (B, T) -> (B, seq_len) path (models/backbone/wan.py).
* SVD (``UNetSpatioTemporalConditionModel``): the only positional signal is the frame index embedding of each
  ``TransformerSpatioTemporalModel`` (``time_pos_embed(time_proj(arange(F)))``). A forward pre-hook on those
  ``time_proj`` modules maps the frame index ``f`` to ``f mod T``. SVD also mixes frames in its temporal resnet
  blocks (``Conv3d`` with kernel (3, 1, 1), zero padding); on the joined sequence reference frame T-1 and target
  frame 0 would be neighbours there, so a forward hook on every such conv subtracts the taps that cross the seam
  (the conv is linear: ``out[o] -= W_j x[o + j - p]`` for the pairs (o, o + j - p) on opposite sides), which gives
  each half exactly the zero-padded convolution it would get alone (up to float rounding). The spatial layers are
  per frame and position-free. Result on both backbones: the two halves are processed as two clips at the same
  positions that only meet in attention (tested: identical halves in -> identical halves out).

LoRA: :func:`add_ic_lora` injects a peft LoRA (rank configurable; default targets = attention q/k/v/out and the
feed-forward linears, :data:`neural_render.models.lora.DEFAULT_TARGETS`). :func:`save_ic_lora` writes a LoRA
folder (peft files + ``ic_lora.json`` with the backbone kind and a signature of its architecture) and
:func:`load_ic_lora` refuses a folder made for another backbone (NeuralRenderError naming the folder).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

IC_LORA_FILE = "ic_lora.json"
IC_LORA_FORMAT = "neural_render.ic_lora"
IC_LORA_VERSION = 1
DEFAULT_ADAPTER = "sim2real"


# ----------------------------------------------------------------------------------------------- token layout
def ic_sequence(reference: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate reference and target latents (B, T, C, h, w) along frames -> (x (B, 2T, C, h, w),
    clean_frames (B, 2T) bool: True on the reference half)."""
    if reference.ndim != 5 or reference.shape != target.shape:
        raise NeuralRenderError(f"reference {tuple(reference.shape)} and target {tuple(target.shape)} must both be "
                                f"(B, T, C, h, w) of the same shape")
    b, t = reference.shape[:2]
    clean = torch.zeros(b, 2 * t, dtype=torch.bool, device=reference.device)
    clean[:, :t] = True
    return torch.cat([reference, target.to(reference.dtype)], dim=1), clean


def target_half(x: Tensor) -> Tensor:
    """(B, 2T, ...) -> the target frames (B, T, ...)."""
    return x[:, x.shape[1] // 2:]


class _ICState:
    """Read by the position hooks: ``active`` inside :func:`in_context`."""

    def __init__(self) -> None:
        self.active = False


def _wan_rope_hook(state: _ICState, module, inputs, output):
    if not state.active:
        return None
    hidden = inputs[0]
    frames = hidden.shape[2] // int(module.patch_size[0])
    if frames % 2:
        raise NeuralRenderError(f"in-context sequence has {frames} token frames; reference and target halves must "
                                "be equal (T divisible by the temporal patch)")
    cos, sin = output
    half = cos.shape[1] // 2
    return torch.cat([cos[:, :half], cos[:, :half]], dim=1), torch.cat([sin[:, :half], sin[:, :half]], dim=1)


def _svd_frame_index_pre_hook(state: _ICState, module, args):
    if not state.active:
        return None
    index = args[0]
    frames = int(index.max()) + 1
    if frames % 2:
        raise NeuralRenderError(f"in-context sequence has {frames} frames; reference and target halves must be equal")
    return (torch.remainder(index, frames // 2),) + tuple(args[1:])


def _temporal_conv_seam_hook(state: _ICState, module, inputs, output):
    """Remove the taps of a temporal Conv3d (kernel (k, 1, 1)) that cross the reference | target seam."""
    if not state.active:
        return None
    x = inputs[0]                                  # (N, Cin, F, H, W)
    frames = x.shape[2]
    if frames % 2:
        raise NeuralRenderError(f"in-context sequence has {frames} frames; reference and target halves must be equal")
    half, pad = frames // 2, int(module.padding[0])
    output = output.clone()
    for j in range(module.weight.shape[2]):
        offset = j - pad
        if offset == 0:
            continue
        weight = module.weight[:, :, j, 0, 0].to(x.dtype)   # (Cout, Cin)
        outs = range(half - offset, half) if offset > 0 else range(half, half - offset)
        for o in outs:
            if 0 <= o < frames and 0 <= o + offset < frames:
                output[:, :, o] -= torch.einsum("oc,nchw->nohw", weight, x[:, :, o + offset])
    return output


def _state(backbone) -> _ICState:
    """The backbone's position-sharing state, installing the hooks on first use (idempotent)."""
    model = getattr(backbone, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise NeuralRenderError(f"expected a VideoBackbone, got {type(backbone).__name__}")
    state = getattr(model, "_ic_lora_state", None)
    if state is not None:
        return state
    state = _ICState()
    if backbone.kind == "wan":
        model.rope.register_forward_hook(functools.partial(_wan_rope_hook, state))
    elif backbone.kind == "svd":
        from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

        blocks = [m for m in model.modules() if isinstance(m, TransformerSpatioTemporalModel)]
        for block in blocks:
            block.time_proj.register_forward_pre_hook(functools.partial(_svd_frame_index_pre_hook, state))
        for conv in model.modules():
            if isinstance(conv, torch.nn.Conv3d) and conv.kernel_size[0] > 1:
                if tuple(conv.kernel_size[1:]) != (1, 1) or tuple(conv.stride) != (1, 1, 1) or conv.dilation[0] != 1:
                    raise NeuralRenderError(f"IC-LoRA cannot separate the halves in a Conv3d with kernel "
                                            f"{conv.kernel_size}, stride {conv.stride}")
                conv.register_forward_hook(functools.partial(_temporal_conv_seam_hook, state))
    else:
        raise NeuralRenderError(f"IC-LoRA supports svd and wan backbones, got {backbone.kind!r}")
    model._ic_lora_state = state
    return state


def set_in_context(backbone, active: bool = True) -> None:
    """Switch the in-context layout on (or off) for every later forward of ``backbone``, including the recomputed
    forwards of gradient checkpointing during backward (which run outside any ``with`` block). Tasks and pipelines
    that only ever run in-context sequences use this; :func:`in_context` is the scoped form."""
    _state(backbone).active = bool(active)


@contextlib.contextmanager
def in_context(backbone):
    """Within this context every forward of ``backbone`` treats its frames as [reference | target] halves sharing
    positions (module doc). Nesting is allowed; the previous state is restored on exit."""
    state = _state(backbone)
    previous, state.active = state.active, True
    try:
        yield backbone
    finally:
        state.active = previous


# ----------------------------------------------------------------------------------------------- LoRA
def backbone_signature(backbone) -> dict:
    """{"kind", "config_sha256", "input_channels", "latent_channels"}: identifies the architecture a LoRA fits."""
    model = backbone.model
    config = {k: v for k, v in dict(model.config).items() if not str(k).startswith("_")}
    text = json.dumps(config, sort_keys=True, default=str)
    proj = model.patch_embedding if backbone.kind == "wan" else model.conv_in
    return {"kind": backbone.kind, "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "input_channels": int(proj.in_channels), "latent_channels": int(backbone.latent_channels)}


def add_ic_lora(backbone, rank: int, alpha: float | None = None, target_modules: list[str] | None = None,
                adapter_name: str = DEFAULT_ADAPTER, freeze_base: bool = True):
    """Inject the IC-LoRA adapter (peft, B zero-initialised: outputs unchanged until trained); returns backbone.

    rank: LoRA rank r > 0; alpha: lora_alpha (default r); target_modules: default attention q/k/v/out + FFN of the
    backbone kind; freeze_base: only LoRA weights trainable.
    """
    from neural_render.models.lora import add_lora

    _state(backbone)
    return add_lora(backbone, rank=rank, alpha=alpha, target_modules=target_modules, adapter_name=adapter_name,
                    freeze_base=freeze_base)


def save_ic_lora(backbone, directory: str | os.PathLike, adapter_name: str = DEFAULT_ADAPTER,
                 info: dict | None = None) -> None:
    """Write a LoRA folder atomically: peft ``adapter_config.json`` + ``adapter_model.safetensors`` +
    ``ic_lora.json`` (format, version, adapter name, backbone signature, ``info`` e.g. training steps, base)."""
    from neural_render.io.atomic import atomic_dir
    from neural_render.models.lora import save_lora

    record = {"format": IC_LORA_FORMAT, "version": IC_LORA_VERSION, "adapter_name": adapter_name,
              "backbone": backbone_signature(backbone), "info": dict(info or {})}
    json.dumps(record)  # fail before writing anything if info is not JSON
    with atomic_dir(directory) as tmp:
        stage = Path(tmp) / ".stage"
        save_lora(backbone, stage, adapter_name=adapter_name)
        for child in stage.iterdir():
            os.replace(child, Path(tmp) / child.name)
        stage.rmdir()
        (Path(tmp) / IC_LORA_FILE).write_text(json.dumps(record, indent=2))


def read_ic_lora_info(directory: str | os.PathLike) -> dict:
    """The validated ``ic_lora.json`` of a LoRA folder (NeuralRenderError naming the file otherwise)."""
    path = Path(directory) / IC_LORA_FILE
    if not Path(directory).is_dir():
        raise NeuralRenderError("no such LoRA folder", directory)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"not an IC-LoRA folder: cannot read {IC_LORA_FILE}: {err}", path) from None
    if not isinstance(record, dict) or record.get("format") != IC_LORA_FORMAT:
        raise NeuralRenderError(f"{IC_LORA_FILE} is not an IC-LoRA record", path)
    if record.get("version") != IC_LORA_VERSION:
        raise NeuralRenderError(f"unsupported IC-LoRA version {record.get('version')!r} (reader: {IC_LORA_VERSION})",
                                path)
    if not isinstance(record.get("backbone"), dict):
        raise NeuralRenderError(f"{IC_LORA_FILE} lacks the backbone signature", path)
    return record


def check_lora_fits(backbone, record: dict, source) -> None:
    """Raise NeuralRenderError (naming ``source``) unless the LoRA record was made for this backbone architecture."""
    want, have = record["backbone"], backbone_signature(backbone)
    if want.get("kind") != have["kind"]:
        raise NeuralRenderError(f"LoRA was trained for a {want.get('kind')!r} backbone, this backbone is "
                                f"{have['kind']!r}", source)
    for key in ("config_sha256", "input_channels", "latent_channels"):
        if want.get(key) != have[key]:
            raise NeuralRenderError(f"LoRA was trained for another {have['kind']} architecture ({key} "
                                    f"{want.get(key)!r} != {have[key]!r})", source)


def load_ic_lora(backbone, directory: str | os.PathLike, adapter_name: str | None = None):
    """Load a folder written by :func:`save_ic_lora` into ``backbone`` after checking it fits; returns backbone."""
    from neural_render.models.lora import load_lora

    record = read_ic_lora_info(directory)
    check_lora_fits(backbone, record, directory)
    _state(backbone)
    return load_lora(backbone, directory, adapter_name=adapter_name or record.get("adapter_name", DEFAULT_ADAPTER))
