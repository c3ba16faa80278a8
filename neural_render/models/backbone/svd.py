"""SVD adapter around an UNMODIFIED diffusers ``UNetSpatioTemporalConditionModel``.

Layout: SVD's UNet already takes (B, T, C, h, w), so no permutation is needed. Mapping of the interface:
    noisy ++ cond (channel concat) -> ``sample``; context -> ``encoder_hidden_states`` (B, L, cross_attention_dim)
    (DiffusionRenderer replaces SVD's single CLIP image token by learned pass/task tokens); ``added_time_ids``
    (B, 3) = (fps, motion_bucket_id, noise_aug_strength) from the adapter settings (SVD pipeline defaults: fps
    7 -> 6 fed to the UNet, 127, 0.02), or zeros when ``added_time_ids=None``; ``added["added_time_ids"]``
    (B, 3) overrides per call.

Per-frame timesteps (B, T). The UNet embeds ONE timestep per clip: ``emb = time_embedding(time_proj(t)) +
add_embedding(...)`` is (B, D) and is ``repeat_interleave``-d to (B*T, D) before the blocks. A hook on
``time_embedding`` cannot help (its output must stay (B, D)). But every consumer of that embedding is a
resnet block with a ``time_emb_proj`` layer (``ResnetBlock2D`` gets (B*T, D), ``TemporalResnetBlock`` gets the
same values reshaped to (B, T, D)). So the adapter computes the per-frame embedding itself, with the UNet's
own ``time_proj``/``time_embedding``/``add_embedding`` modules, and a forward pre-hook on each such block
swaps its ``temb`` argument for the per-frame one (same shape, so nothing else changes). With gradient
checkpointing, diffusers recomputes blocks during backward; the adapter's checkpoint function captures the
per-frame embedding at forward time and re-installs it for the recomputation. Equal timesteps across frames
take the plain path (exactly the UNet's own computation).
"""

from __future__ import annotations

import functools

import torch
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 - diffusers' pipeline loader finds from_pretrained through this name

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone.base import (
    FrameRule,
    HookState,
    VideoBackbone,
    add_tokens_hook,
    parse_autocast_dtype,
)
from neural_render.models.backbone.channels import attach_condition_channels

#: values fed to the UNet as added_time_ids by default (SVD pipeline: fps=7 -> 6, motion bucket 127, noise aug 0.02)
SVD_DEFAULT_ADDED_TIME_IDS = (6.0, 127.0, 0.02)


def _flatten_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) -> (B*T, C, h, w): the layout of SVD's conv_in output."""
    return x.flatten(0, 1)


def _frame_temb_pre_hook(state: HookState, module, args, kwargs):
    """Forward pre-hook on a resnet block: replace its ``temb`` by the per-frame embedding (same shape)."""
    if state.frame_temb is None:
        return None
    args = list(args)
    if len(args) >= 2:
        temb = args[1]
    else:
        temb = kwargs.get("temb")
    if temb is None:
        return None
    if temb.numel() != state.frame_temb.numel():
        raise RuntimeError(
            f"per-frame timestep embedding {tuple(state.frame_temb.shape)} does not fit the block's temb "
            f"{tuple(temb.shape)}"
        )
    new = state.frame_temb.reshape(temb.shape).to(temb.dtype)
    if len(args) >= 2:
        args[1] = new
    else:
        kwargs = dict(kwargs, temb=new)
    return tuple(args), kwargs


def checkpoint_with_state(state: HookState, module, *args):
    """diffusers gradient-checkpointing function that re-installs the hook state during the backward recompute."""
    captured = state.frame_temb

    def run(*inner):
        with state.using(frame_temb=captured):
            return module(*inner)

    return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)


class SVDBackbone(VideoBackbone):
    """Adapter: see module docstring. Build with :func:`neural_render.models.backbone.build_backbone`.

    unet: diffusers UNetSpatioTemporalConditionModel (its ``conv_in`` is expanded in place by
    ``cond_channels``). cond_channels: total condition channels (>= the UNet's native in - out channels).
    base_in_channels: original conv_in input channels when ``unet`` was saved already expanded (loading).
    added_time_ids: 3 numbers or None (zeros). autocast_dtype: None | 'bfloat16' | 'float16'.
    """

    kind = "svd"
    ADDED_KEYS = ("token_add", "added_time_ids")
    SUBFOLDER = "unet"
    MODEL_CLASS = "UNetSpatioTemporalConditionModel"
    INPUT_LAYER = "conv_in"

    def __init__(
        self,
        unet,
        cond_channels: int | None = None,
        base_in_channels: int | None = None,
        added_time_ids: tuple[float, ...] | list[float] | None = SVD_DEFAULT_ADDED_TIME_IDS,
        autocast_dtype: str | torch.dtype | None = None,
    ):
        super().__init__()
        from diffusers.models.attention_processor import AttnProcessor2_0

        cfg = unet.config
        self.latent_channels = int(cfg.out_channels)
        self.cond_channels, self.base_in_channels = attach_condition_channels(
            unet, self.INPUT_LAYER, self.latent_channels, cond_channels, base_in_channels)
        self.unet = unet
        # SDPA attention explicitly (diffusers' default on torch 2, made certain here).
        unet.set_attn_processor(AttnProcessor2_0())

        self.context_dim = int(cfg.cross_attention_dim)
        self.spatial_multiple = 2 ** (len(cfg.block_out_channels) - 1)
        self.frame_rule = FrameRule(description="any T >= 1 latent frames")
        self.token_dim = int(cfg.block_out_channels[0])
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)
        n_ids = int(cfg.projection_class_embeddings_input_dim) // int(cfg.addition_time_embed_dim)
        if added_time_ids is not None:
            added_time_ids = [float(v) for v in added_time_ids]
            if len(added_time_ids) != n_ids:
                raise NeuralRenderError(f"added_time_ids needs {n_ids} values for this UNet, got {added_time_ids}")
        self.num_added_time_ids = n_ids
        self.added_time_ids = added_time_ids

        self._state = HookState()
        unet.conv_in.register_forward_hook(functools.partial(add_tokens_hook, self._state, _flatten_frames))
        self._temb_blocks = [m for m in unet.modules() if hasattr(m, "time_emb_proj")]
        for block in self._temb_blocks:
            block.register_forward_pre_hook(functools.partial(_frame_temb_pre_hook, self._state), with_kwargs=True)

    @property
    def model(self):
        return self.unet

    def settings(self) -> dict:
        """Adapter settings saved beside the diffusers weights (backbone.json): the shared ones + added_time_ids."""
        return {**super().settings(), "added_time_ids": self.added_time_ids}

    def token_grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        return (num_frames, height, width)

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing(functools.partial(checkpoint_with_state, self._state))

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()

    # ---- forward ----------------------------------------------------------------------------------------
    def _time_ids(self, batch: int, device, added: dict) -> torch.Tensor:
        ids = added.get("added_time_ids")
        if ids is not None:
            ids = torch.as_tensor(ids, dtype=torch.float32, device=device)
            if tuple(ids.shape) != (batch, self.num_added_time_ids):
                raise NeuralRenderError(f"added['added_time_ids'] must be ({batch}, {self.num_added_time_ids})")
            return ids
        if self.added_time_ids is None:
            return torch.zeros(batch, self.num_added_time_ids, device=device)
        return torch.tensor([self.added_time_ids], dtype=torch.float32, device=device).expand(batch, -1)

    def _per_frame_embedding(self, timestep: torch.Tensor, time_ids: torch.Tensor, sample_dtype) -> torch.Tensor:
        """(B, T) timesteps -> (B*T, D) embedding, computed exactly as the UNet does for one timestep per clip."""
        unet = self.unet
        b, t = timestep.shape
        t_emb = unet.time_proj(timestep.flatten()).to(dtype=sample_dtype)
        emb = unet.time_embedding(t_emb)
        time_embeds = unet.add_time_proj(time_ids.flatten()).reshape((b, -1)).to(emb.dtype)
        aug_emb = unet.add_embedding(time_embeds)
        return emb + aug_emb.repeat_interleave(t, dim=0)

    def _forward(self, noisy, timestep, cond, context, added):
        b = noisy.shape[0]
        sample = noisy if cond is None else torch.cat([noisy, cond.to(noisy.dtype)], dim=2)
        if context is None:
            context = noisy.new_zeros(b, 1, self.context_dim)
        time_ids = self._time_ids(b, noisy.device, added)
        frame_temb = None
        if timestep.ndim == 2:
            if bool((timestep == timestep[:, :1]).all()):
                timestep = timestep[:, 0]
            else:
                frame_temb = self._per_frame_embedding(timestep, time_ids, sample.dtype)
                timestep = timestep[:, 0]
        with self._state.using(token_add=added.get("token_add"), frame_temb=frame_temb):
            return self.unet(
                sample, timestep, encoder_hidden_states=context, added_time_ids=time_ids, return_dict=False
            )[0]
