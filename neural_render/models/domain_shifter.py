"""Realiz3D domain shifters: a learned "visual domain" co-variate (synthetic / real) added after every block.

Per block ``l`` of the backbone (each Wan transformer block; each SVD down / mid / up block) the block output X
(the residual stream) becomes

    X + W_left[l] W_right[l] e_domain            e_domain in {e_synthetic, e_real}: learned (embed_dim,) vectors

with ``W_right[l]`` (rank x embed_dim) and ``W_left[l]`` (dim_l x rank) per block, ``W_left`` ZERO-initialised: a
fresh shifter adds an exact zero, so the backbone's output is bit-identical with or without it, for either domain.
The shifter is attached with forward hooks on the UNMODIFIED diffusers blocks (:meth:`DomainShifters.attach`); its
weights live in this module, never in the backbone's state dict, so the backbone still saves / loads as a plain
diffusers model. The offset is per sample and per channel: Wan block outputs (B, L, D) get (B, 1, D); SVD block
outputs (B*T, C, h, w) get (B*T, C, 1, 1); an SVD down block also returns its skip features, all with the block's
C channels, and they are shifted (and frozen, below) the same way.

Which domain each block uses is per sample: ``domains`` (B, N) long ids over the N blocks in depth order
(index 0 = first block). That expresses Realiz3D's schedules:

* stage 1 (backbone frozen, shifters trained on real + synthetic with the control dropped): ids per sample;
* stage 2 (shifters frozen, backbone trained): synthetic samples use e_synthetic everywhere; real samples use e_real
  with the first ``k`` blocks reassigned to e_synthetic with probability p (:func:`reassign_early_blocks`), and
  *layer-aware freezing* (``detach_rows``): the outputs of blocks ``< frozen_blocks`` are detached for those rows,
  so real samples train only the later blocks (early blocks = structure, learned from synthetic data with control);
* inference: e_real everywhere, optionally e_synthetic in the first blocks during the first (noisiest) sampling
  steps (the pipeline changes the domains between steps).

State (domains, detach rows, frozen block count) is set with :meth:`DomainShifters.set_state` and stays until the
next call, so a gradient-checkpointing recompute during backward sees the values of its forward pass.
Without a state every block uses ``default_domain`` (``"real"``, Realiz3D's inference setting).

``anchor_synthetic`` (default False): e_synthetic is held at zero, so the synthetic domain computes exactly as the
backbone without shifters and only e_real moves it: for a backbone already trained on synthetic data (issue #26:
Realiz3D stage 1 on the shipped plain forward model), learning the real domain then cannot cost the synthetic
renders anything.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 - diffusers' loader finds from_pretrained through this name
from torch import Tensor, nn

from neural_render.errors import NeuralRenderError
from neural_render.models.persistence import LocalModelMixin

DOMAINS = ("synthetic", "real")
SYNTHETIC, REAL = 0, 1


def backbone_blocks(backbone) -> list[tuple[str, nn.Module, int]]:
    """(name, block module, output channels) of every shifted block of a VideoBackbone, in depth order.

    Wan: ``transformer.blocks[i]`` (inner dim). SVD: ``down_blocks[i]``, ``mid_block``, ``up_blocks[i]``.
    """
    kind = getattr(backbone, "kind", None)
    if kind == "wan":
        model = backbone.transformer
        dim = int(model.config.num_attention_heads) * int(model.config.attention_head_dim)
        return [(f"blocks.{i}", block, dim) for i, block in enumerate(model.blocks)]
    if kind == "svd":
        model = backbone.unet
        channels = [int(c) for c in model.config.block_out_channels]
        blocks = [(f"down_blocks.{i}", b, channels[i]) for i, b in enumerate(model.down_blocks)]
        blocks.append(("mid_block", model.mid_block, channels[-1]))
        blocks += [(f"up_blocks.{i}", b, c) for i, (b, c) in enumerate(zip(model.up_blocks, channels[::-1]))]
        return blocks
    raise NeuralRenderError(f"domain shifters need an svd or wan backbone, got {type(backbone).__name__}")


def _domain_index(name: str) -> int:
    if name not in DOMAINS:
        raise NeuralRenderError(f"unknown domain {name!r}; known: {list(DOMAINS)}")
    return DOMAINS.index(name)


def domain_ids(domains, batch: int, num_blocks: int, device=None) -> Tensor:
    """Normalise a domain spec to (batch, num_blocks) long ids.

    domains: "real" / "synthetic" (every sample, every block); (B,) ids (per sample); (B, N) ids (per sample and block).
    """
    if isinstance(domains, str):
        return torch.full((batch, num_blocks), _domain_index(domains), dtype=torch.long, device=device)
    ids = torch.as_tensor(domains, device=device).long()
    if ids.ndim == 1:
        ids = ids[:, None].expand(-1, num_blocks)
    if ids.ndim != 2 or ids.shape != (batch, num_blocks):
        raise NeuralRenderError(f"domain ids must be (B,) or (B, N) = ({batch}, {num_blocks}), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(DOMAINS)):
        raise NeuralRenderError(f"domain ids must be in 0..{len(DOMAINS) - 1}")
    return ids.contiguous()


def reassign_early_blocks(ids: Tensor, rows: Tensor, num_blocks: int, probability: float,
                          generator: torch.Generator | None = None, to: int = SYNTHETIC) -> Tensor:
    """Realiz3D stage-2 reassignment: for each selected row, with ``probability``, blocks ``< num_blocks`` use ``to``.

    ids: (B, N) long; rows: (B,) bool (e.g. the real samples). Returns new ids (input untouched).
    """
    if not 0.0 <= probability <= 1.0:
        raise NeuralRenderError(f"reassignment probability must be in [0, 1], got {probability}")
    gen_device = generator.device if generator is not None else ids.device
    draw = (torch.rand(ids.shape[0], generator=generator, device=gen_device) < probability).to(ids.device)
    chosen = rows.to(ids.device).bool() & draw
    out = ids.clone()
    out[chosen, : int(num_blocks)] = int(to)
    return out


class DomainShifters(LocalModelMixin):
    """All shifters of one backbone (see module docstring).

    block_dims: output channels of each shifted block, in depth order (:func:`backbone_blocks`).
    rank: r of W_left W_right. embed_dim: size of e_synthetic / e_real. init_std: std of the embeddings and of
    W_right at initialisation (drawn from a private generator seeded by ``seed``). default_domain: domain used when
    no state is set.
    """

    @register_to_config
    def __init__(self, block_dims: list[int] | tuple[int, ...] = (32,), rank: int = 4, embed_dim: int = 16,
                 init_std: float = 1.0, seed: int = 0, default_domain: str = "real", anchor_synthetic: bool = False):
        super().__init__()
        dims = [int(d) for d in block_dims]
        if not dims or min(dims) < 1 or int(rank) < 1 or int(embed_dim) < 1:
            raise NeuralRenderError(f"domain shifters need block_dims >= 1, rank >= 1, embed_dim >= 1; got "
                                    f"{dims}, {rank}, {embed_dim}")
        _domain_index(default_domain)
        gen = torch.Generator().manual_seed(int(seed))
        self.embeddings = nn.Parameter(torch.randn(len(DOMAINS), int(embed_dim), generator=gen) * float(init_std))
        self.right = nn.ParameterList(
            [nn.Parameter(torch.randn(int(rank), int(embed_dim), generator=gen)
                          * (float(init_std) / int(embed_dim) ** 0.5)) for _ in dims])
        self.left = nn.ParameterList([nn.Parameter(torch.zeros(d, int(rank))) for d in dims])
        self.block_dims = dims
        self._handles: list = []
        self._attached_to: list[str] = []
        self._domains: Tensor | None = None
        self._detach_rows: Tensor | None = None
        self._frozen_blocks = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_backbone(cls, backbone, rank: int = 4, embed_dim: int = 16, **kwargs) -> DomainShifters:
        """Shifters sized for ``backbone``'s blocks, attached to it."""
        shifters = cls([d for _, _, d in backbone_blocks(backbone)], rank=rank, embed_dim=embed_dim, **kwargs)
        shifters.attach(backbone)
        return shifters

    @property
    def num_blocks(self) -> int:
        return len(self.block_dims)

    # ------------------------------------------------------------------ hooks
    def attach(self, backbone) -> DomainShifters:
        """Register a forward hook on each block of ``backbone`` (detaching from any previous backbone first)."""
        blocks = backbone_blocks(backbone)
        dims = [d for _, _, d in blocks]
        if dims != self.block_dims:
            raise NeuralRenderError(f"domain shifters were built for block dims {self.block_dims}, the backbone has "
                                    f"{dims}")
        self.detach()
        for index, (name, block, _) in enumerate(blocks):
            self._handles.append(block.register_forward_hook(self._hook_for(index)))
            self._attached_to.append(name)
        return self

    def detach(self) -> None:
        """Remove the hooks (the backbone then computes exactly as without shifters)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._attached_to = [], []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _hook_for(self, index: int):
        def hook(module, args, output):
            return self._shift(index, output)
        return hook

    def offsets(self, index: int, ids: Tensor) -> Tensor:
        """W_left[index] W_right[index] e_{ids}: ids (B,) long -> (B, dim) float32."""
        embeddings = self.embeddings
        if self.config.get("anchor_synthetic", False):  # e_synthetic == 0: the synthetic domain is the bare backbone
            keep = torch.ones_like(embeddings[:, :1])
            keep[SYNTHETIC] = 0.0
            embeddings = embeddings * keep
        e = embeddings[ids.to(embeddings.device)]                                # (B, E)
        return (e @ self.right[index].t()) @ self.left[index].t()               # (B, dim)

    def _shift(self, index: int, output):
        if isinstance(output, tuple):  # SVD down block: (hidden, (skip, ...)), all with the block's channels
            hidden, skips = output
            return self._shift_tensor(index, hidden), tuple(self._shift_tensor(index, s) for s in skips)
        return self._shift_tensor(index, output)

    def _shift_tensor(self, index: int, x: Tensor) -> Tensor:
        ids = self._domains
        if ids is None:
            ids = torch.full((1,), _domain_index(self.config.default_domain), dtype=torch.long)
            batch = 1
        else:
            ids = ids[:, index]
            batch = ids.shape[0]
        if x.shape[0] % batch:
            raise NeuralRenderError(f"block output batch {x.shape[0]} is not a multiple of the {batch} domain ids")
        off = self.offsets(index, ids).to(device=x.device, dtype=x.dtype)     # (B, dim)
        if x.ndim == 3:                                                        # Wan (B, L, D)
            off = off.repeat_interleave(x.shape[0] // batch, 0)[:, None, :]
        elif x.ndim == 4:                                                      # SVD (B*T, C, h, w)
            off = off.repeat_interleave(x.shape[0] // batch, 0)[:, :, None, None]
        else:
            raise NeuralRenderError(f"unexpected block output shape {tuple(x.shape)}")
        y = x + off
        rows = self._detach_rows
        if rows is not None and index < self._frozen_blocks and torch.is_grad_enabled():
            rows = rows.to(y.device).bool().repeat_interleave(x.shape[0] // rows.shape[0], 0)
            y = torch.where(rows.view(-1, *([1] * (y.ndim - 1))), y.detach(), y)
        return y

    # ------------------------------------------------------------------ state
    def set_state(self, domains=None, batch: int | None = None, detach_rows: Tensor | None = None,
                  frozen_blocks: int = 0) -> None:
        """Set the domains used by the following forward passes (see module docstring).

        domains: None (default domain), a name, (B,) or (B, N) ids; ``batch`` is needed for a name.
        detach_rows: (B,) bool rows whose gradient must not reach blocks ``< frozen_blocks`` (layer-aware freezing).
        """
        if domains is None:
            self._domains = None
        else:
            if isinstance(domains, str):
                if batch is None:
                    raise NeuralRenderError("set_state with a domain name needs the batch size")
                b = int(batch)
            else:
                b = int(torch.as_tensor(domains).shape[0])
            self._domains = domain_ids(domains, b, self.num_blocks)
        if detach_rows is not None:
            detach_rows = torch.as_tensor(detach_rows).bool().reshape(-1)
            if self._domains is not None and detach_rows.shape[0] != self._domains.shape[0]:
                raise NeuralRenderError("detach_rows must have one entry per sample")
        if not 0 <= int(frozen_blocks) <= self.num_blocks:
            raise NeuralRenderError(f"frozen_blocks must be in 0..{self.num_blocks}, got {frozen_blocks}")
        self._detach_rows = detach_rows
        self._frozen_blocks = int(frozen_blocks)

    def state(self) -> tuple[Tensor | None, Tensor | None, int]:
        return self._domains, self._detach_rows, self._frozen_blocks

    @contextlib.contextmanager
    def using(self, domains=None, batch: int | None = None, detach_rows: Tensor | None = None,
              frozen_blocks: int = 0):
        """:meth:`set_state` for the duration of a block (the previous state is restored after)."""
        previous = self.state()
        self.set_state(domains, batch, detach_rows, frozen_blocks)
        try:
            yield self
        finally:
            self._domains, self._detach_rows, self._frozen_blocks = previous
