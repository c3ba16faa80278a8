"""DiffusionRenderer's UNet: diffusers' SVD UNet, unmodified, plus the three things its checkpoints add.

A DiffusionRenderer ``unet/`` folder (``_class_name`` UNetCustomSpatioTemporalConditionModel) is Stable Video
Diffusion's spatio-temporal UNet with three extra config keys. :class:`DiffusionRendererUNet` builds the plain
``diffusers.UNetSpatioTemporalConditionModel`` and adds them around it, with the same parameter names, so the
folder's state dict loads as is:

``context_embedding_type`` (None, "clip" or "time") with ``context_vocab_size``
    A pass/"context" table ``context_embedding`` = ``nn.Embedding(vocab, d, max_norm=10)``: looking a row up
    rescales it in place to norm 10 when it is longer (PyTorch's ``max_norm`` semantics, kept here). "clip": the
    row (d = the cross-attention width) is added to every cross-attention token of its sample; "time": the row
    (d = 4 x block_out_channels[0]) is added to its sample's time embedding. Pass ids: basecolor 0, metallic 1,
    roughness 2, normal 3, depth 4, diffuse_albedo 5.
``multi_res_encoder_hidden_states``
    ``encoder_hidden_states`` is a list, one token tensor per UNet level (the env encoder's maps): down block i and
    its mirror up block use level i, the mid block the deepest level. Cross-attention widths may differ per level
    (``cross_attention_dim`` as a tuple, which diffusers already supports).
``temporal_cross_attention_dim``
    Per level: None removes the temporal blocks' cross-attention (their ``attn2`` / ``norm2``), as in the
    forward renderer; a width equal to the level's cross-attention width keeps SVD's temporal cross-attention on
    the first frame's tokens. Any other width is refused: the context those layers would attend to is never given.

The per-level tokens and the context rows reach the unmodified diffusers blocks through forward pre-hooks
(``encoder_hidden_states`` of each cross-attention block) and a forward hook on ``time_embedding``.

Shapes: ``sample`` (B, T, C_in, h, w) latents; ``encoder_hidden_states`` (B, S, D), (B, 1, S, D) or per frame
(B, T, S, D), or a list of those per level; ``input_context`` an int, (B,) or (B, 1) int64 pass ids; output
(B, T, C_out, h, w). The reference implementation cannot run ``context_embedding_type="time"`` (its time
embedding and the looked-up row broadcast to a (B*T, B*T, d) tensor), so for "time" this module follows the
evident intent (one row per sample added to that sample's time embedding) and no reference output exists.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionModel,
    UNetSpatioTemporalConditionOutput,
)
from torch import nn

#: the reference builds its pass table with this ``max_norm`` (not a config key)
CONTEXT_MAX_NORM = 10.0
CONTEXT_TYPES = (None, "clip", "time")
#: DiffusionRenderer's pass ids (its inference scripts' table)
PASS_IDS = {"basecolor": 0, "metallic": 1, "roughness": 2, "normal": 3, "depth": 4, "diffuse_albedo": 5}


def _per_level(value, n: int, name: str) -> tuple:
    if value is None or isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} UNet levels")
    return value


class DiffusionRendererUNet(UNetSpatioTemporalConditionModel):
    """diffusers' ``UNetSpatioTemporalConditionModel`` + DiffusionRenderer's context table, per-level tokens and
    per-level temporal cross-attention (see the module docstring). Config keys are the reference's."""

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: Sequence[str] = ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
        up_block_types: Sequence[str] = ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | Sequence[int] = 2,
        cross_attention_dim: int | Sequence[int] = 1024,
        temporal_cross_attention_dim: int | Sequence[int | None] | None = 1024,
        transformer_layers_per_block: int | Sequence = 1,
        num_attention_heads: int | Sequence[int] = (5, 10, 20, 20),
        num_frames: int = 25,
        multi_res_encoder_hidden_states: bool = False,
        context_embedding_type: str | None = None,
        context_vocab_size: int | None = 16,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=tuple(down_block_types), up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels), addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block, num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        levels = len(block_out_channels)
        self._cross_dims = _per_level(cross_attention_dim, levels, "cross_attention_dim")
        temporal = _per_level(temporal_cross_attention_dim, levels, "temporal_cross_attention_dim")
        for block, level in self._blocks_by_level():
            _set_temporal_cross_attention(block, temporal[level], self._cross_dims[level])

        kind = None if context_embedding_type is None else str(context_embedding_type).lower()
        if kind not in CONTEXT_TYPES:
            raise ValueError(f"context_embedding_type {context_embedding_type!r} is not one of {CONTEXT_TYPES}")
        if kind == "clip" and multi_res_encoder_hidden_states:
            raise ValueError("context_embedding_type 'clip' with multi_res_encoder_hidden_states is not supported "
                             "(the reference cannot run it either: it adds one row to a list of token maps)")
        self.context_embedding = None
        if kind is not None:
            width = self._cross_dims[0] if kind == "clip" else 4 * block_out_channels[0]
            self.context_embedding = nn.Embedding(int(context_vocab_size), width, max_norm=CONTEXT_MAX_NORM)
            nn.init.uniform_(self.context_embedding.weight, -1e-3, 1e-3)  # a fresh table starts near zero
        self._context_kind = kind
        self._call_tokens: list[torch.Tensor] | None = None  # per-call state read by the hooks
        self._call_time_rows: torch.Tensor | None = None
        # bound methods (not closures), so copy.deepcopy (EMA) re-binds the hooks to the copy
        for block, level in self._blocks_by_level():
            if getattr(block, "has_cross_attention", False):
                block.register_forward_pre_hook(functools.partial(self._tokens_hook, level), with_kwargs=True)
        self.time_embedding.register_forward_hook(self._time_hook)

    # -- structure -------------------------------------------------------------------------------------------
    def _blocks_by_level(self):
        """(block, level) for every down, mid and up block; up block i mirrors level n-1-i."""
        n = len(self.down_blocks)
        pairs = [(b, i) for i, b in enumerate(self.down_blocks)] + [(self.mid_block, n - 1)]
        return pairs + [(b, n - 1 - i) for i, b in enumerate(self.up_blocks)]

    def _tokens_hook(self, level: int, module, args, kwargs):
        if self._call_tokens is None:
            return None
        tokens = self._call_tokens[level if self.config.multi_res_encoder_hidden_states else 0]
        return args, {**kwargs, "encoder_hidden_states": tokens}

    def _time_hook(self, module, args, output):
        if self._call_time_rows is None:
            return None
        return output + self._call_time_rows.to(output.dtype)

    def _checkpointed(self, module, *args):
        """Gradient checkpointing that re-installs this call's tokens / context rows for the backward recompute
        (the hooks read per-call state, which is cleared once ``forward`` returns)."""
        tokens, rows = self._call_tokens, self._call_time_rows

        def run(*inner):
            saved = self._call_tokens, self._call_time_rows
            self._call_tokens, self._call_time_rows = tokens, rows
            try:
                return module(*inner)
            finally:
                self._call_tokens, self._call_time_rows = saved

        import torch.utils.checkpoint

        return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)

    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        """diffusers' gradient checkpointing, by default with :meth:`_checkpointed` (hooks stay correct whichever
        blocks diffusers recomputes)."""
        super().enable_gradient_checkpointing(gradient_checkpointing_func or self._checkpointed)

    # -- inputs ----------------------------------------------------------------------------------------------
    def context_rows(self, input_context, batch: int) -> torch.Tensor:
        """Looked-up (and max_norm-renormalised) rows, (B, d). ``input_context``: int, (B,) or (B, 1) pass ids."""
        ids = torch.as_tensor(input_context, dtype=torch.long, device=self.context_embedding.weight.device)
        ids = ids.reshape(-1)
        if ids.numel() == 1 and batch > 1:
            ids = ids.repeat(batch)
        if ids.numel() != batch:
            raise ValueError(f"input_context has {ids.numel()} ids for a batch of {batch}")
        vocab = self.context_embedding.num_embeddings
        if bool(((ids < 0) | (ids >= vocab)).any()):
            raise ValueError(f"input_context ids must lie in [0, {vocab}), got {ids.tolist()}")
        return self.context_embedding(ids)

    def _frame_tokens(self, tokens: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """(B, S, D) | (B, 1, S, D) | (B, T, S, D) -> (B*T, S, D), frame-major within each sample."""
        if tokens.dim() == 3:
            return tokens.repeat_interleave(frames, dim=0)
        if tokens.dim() == 4 and tokens.shape[0] == batch and tokens.shape[1] in (1, frames):
            if tokens.shape[1] == 1:
                return tokens.flatten(0, 1).repeat_interleave(frames, dim=0)
            return tokens.flatten(0, 1)
        raise ValueError(f"encoder_hidden_states of shape {tuple(tokens.shape)} do not fit batch {batch} x "
                         f"{frames} frames (expected (B, S, D), (B, 1, S, D) or (B, T, S, D))")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor | Sequence[torch.Tensor],
        added_time_ids: torch.Tensor,
        input_context: torch.Tensor | int | None = None,
        return_dict: bool = True,
    ) -> UNetSpatioTemporalConditionOutput | tuple:
        """Denoiser output (B, T, C_out, h, w) for ``sample`` (B, T, C_in, h, w); see the module docstring."""
        batch, frames = sample.shape[:2]
        multi = bool(self.config.multi_res_encoder_hidden_states)
        levels = list(encoder_hidden_states) if multi else [encoder_hidden_states]
        if multi and len(levels) != len(self.down_blocks):
            raise ValueError(f"{len(levels)} token maps given for {len(self.down_blocks)} UNet levels")
        if not multi and not torch.is_tensor(encoder_hidden_states):
            raise ValueError("this UNet takes one token tensor (multi_res_encoder_hidden_states is false)")
        tokens = [self._frame_tokens(t, batch, frames) for t in levels]
        time_rows = None
        if input_context is not None:
            if self.context_embedding is None:
                raise ValueError("input_context given but this UNet has no context embedding "
                                 "(context_embedding_type is null)")
            rows = self.context_rows(input_context, batch)
            if self._context_kind == "clip":
                tokens[0] = tokens[0] + rows.repeat_interleave(frames, dim=0)[:, None, :].to(tokens[0].dtype)
            else:
                time_rows = rows
        placeholder = sample.new_zeros(batch, 1, 1)  # diffusers repeats it; the hooks hand each block its tokens
        self._call_tokens, self._call_time_rows = tokens, time_rows
        try:
            return super().forward(sample, timestep, placeholder, added_time_ids, return_dict=return_dict)
        finally:
            self._call_tokens, self._call_time_rows = None, None


def _set_temporal_cross_attention(block: nn.Module, temporal_dim: int | None, cross_dim: int) -> None:
    """Drop (None) or keep (equal width) the temporal cross-attention of every transformer in ``block``."""
    for transformer in getattr(block, "attentions", []):
        for temporal_block in transformer.temporal_transformer_blocks:
            if temporal_dim is None:
                temporal_block.attn2 = None
                temporal_block.norm2 = None
            elif int(temporal_dim) != int(cross_dim):
                raise ValueError(
                    f"temporal_cross_attention_dim {temporal_dim} differs from the level's cross_attention_dim "
                    f"{cross_dim}: the temporal layers would attend to a context nothing provides")
