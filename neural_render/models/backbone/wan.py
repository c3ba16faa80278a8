"""Wan adapter around an UNMODIFIED diffusers ``WanTransformer3DModel`` (Wan 2.1 / 2.2).

Layout: the interface is (B, T, C, h, w); Wan takes (B, C, T, h, w), so the adapter permutes on the way in
and out. noisy ++ cond (channel concat) -> ``hidden_states``; context -> ``encoder_hidden_states``
(B, L, text_dim), one zero token when None; ``added["image_context"]`` -> ``encoder_hidden_states_image``
(I2V models only).

Per-frame timesteps (B, T): diffusers' Wan accepts a (B, seq_len) per-token timestep (``timestep.ndim == 2``,
the Wan 2.2 TI2V path). Tokens are the flattened (T', h', w') patch grid, frame-major, so a per-latent-frame
timestep is repeated over the h'*w' tokens of its frame. With a temporal patch p_t > 1 the frames of one
patch must share a timestep (else NeuralRenderError). Equal timesteps across frames take the (B,) path.

Attention: WanAttnProcessor calls ``dispatch_attention_fn`` whose default backend is torch SDPA.
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


def _tokens_to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, T', D, h', w') -> (B, D, T', h', w'): the layout of Wan's patch_embedding output."""
    return x.permute(0, 2, 1, 3, 4)


class WanBackbone(VideoBackbone):
    """Adapter: see module docstring. Build with :func:`neural_render.models.backbone.build_backbone`.

    transformer: diffusers WanTransformer3DModel (``patch_embedding`` expanded in place by ``cond_channels``).
    cond_channels: total condition channels (>= native in - out channels, e.g. 20 for Wan 2.1 I2V).
    base_in_channels: original patch_embedding input channels when loading an already expanded model.
    autocast_dtype: None | 'bfloat16' | 'float16'.
    """

    kind = "wan"
    ADDED_KEYS = ("token_add", "image_context")
    SUBFOLDER = "transformer"
    MODEL_CLASS = "WanTransformer3DModel"
    INPUT_LAYER = "patch_embedding"

    def __init__(
        self,
        transformer,
        cond_channels: int | None = None,
        base_in_channels: int | None = None,
        autocast_dtype: str | torch.dtype | None = None,
    ):
        super().__init__()
        cfg = transformer.config
        self.latent_channels = int(cfg.out_channels or cfg.in_channels)
        self.cond_channels, self.base_in_channels = attach_condition_channels(
            transformer, self.INPUT_LAYER, self.latent_channels, cond_channels, base_in_channels)
        self.transformer = transformer

        self.patch_size = tuple(int(p) for p in cfg.patch_size)
        p_t, p_h, p_w = self.patch_size
        if p_h != p_w:
            raise NeuralRenderError(f"non-square spatial patch {self.patch_size} not supported")
        self.context_dim = int(cfg.text_dim)
        self.spatial_multiple = p_h
        self.frame_rule = FrameRule(
            multiple=p_t, minimum=p_t, description=f"T latent frames, a multiple of the temporal patch {p_t}"
        )
        self.token_dim = int(cfg.num_attention_heads) * int(cfg.attention_head_dim)
        self.autocast_dtype = parse_autocast_dtype(autocast_dtype)

        self._state = HookState()
        transformer.patch_embedding.register_forward_hook(
            functools.partial(add_tokens_hook, self._state, _tokens_to_channels_first))

    @property
    def model(self):
        return self.transformer

    def token_grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        p_t, p_h, p_w = self.patch_size
        return (num_frames // p_t, height // p_h, width // p_w)

    def enable_gradient_checkpointing(self) -> None:
        self.transformer.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.transformer.disable_gradient_checkpointing()

    def per_token_timestep(self, timestep: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, T) per-latent-frame timesteps -> (B, T'*h'*w') per-token timesteps in Wan's token order."""
        p_t, p_h, p_w = self.patch_size
        if p_t > 1:
            grouped = timestep.unflatten(1, (-1, p_t))
            if not bool((grouped == grouped[..., :1]).all()):
                raise NeuralRenderError(f"frames inside one temporal patch (p_t={p_t}) must share a timestep")
            timestep = grouped[..., 0]
        return timestep.repeat_interleave((height // p_h) * (width // p_w), dim=1)

    def _forward(self, noisy, timestep, cond, context, added):
        b, _, _, h, w = noisy.shape
        sample = noisy if cond is None else torch.cat([noisy, cond.to(noisy.dtype)], dim=2)
        sample = sample.permute(0, 2, 1, 3, 4)
        if context is None:
            context = noisy.new_zeros(b, 1, self.context_dim)
        if timestep.ndim == 2:
            if bool((timestep == timestep[:, :1]).all()):
                timestep = timestep[:, 0]
            else:
                timestep = self.per_token_timestep(timestep, h, w)
        with self._state.using(token_add=added.get("token_add")):
            out = self.transformer(
                sample,
                timestep,
                encoder_hidden_states=context,
                encoder_hidden_states_image=added.get("image_context"),
                return_dict=False,
            )[0]
        return out.permute(0, 2, 1, 3, 4)
