"""Condition channels by zero-initialised expansion of a backbone's input projection.

A pretrained backbone's first layer (SVD ``conv_in``: Conv2d; Wan ``patch_embedding``: Conv3d) sees
``C0`` input channels. To concatenate ``extra`` condition channels we replace it by a conv with
``C0 + extra`` input channels whose weights for the new channels are zero. The replacement computes

    y = conv(x[:, :C0], W[:, :C0], bias) + conv(x[:, C0:], W[:, C0:])

i.e. the ORIGINAL convolution on the original channels (same shapes, same kernels, same summation
order) plus a separate convolution of the extra channels. At initialisation the second term is an exact
zero tensor, so outputs are bit-identical to the original model for any input (adding a single fused
conv over ``C0 + extra`` channels would only be equal up to float rounding, because the reduction order
changes). The weight is ONE parameter of shape (out, C0 + extra, *k), so ``state_dict`` keys and shapes
are those of a plain conv: a saved model loads into the unmodified diffusers class with ``in_channels``
set to ``C0 + extra``.
"""

from __future__ import annotations

import torch
from torch import nn

from neural_render.errors import NeuralRenderError


class _SplitInputConv:
    """Mixin: forward = original conv on the first ``base_in_channels`` channels + conv of the rest."""

    base_in_channels: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C0 + extra, ...) -> (N, out, ...), same shape rules as the wrapped conv."""
        b = self.base_in_channels
        if x.shape[1] != self.in_channels:
            raise NeuralRenderError(
                f"input projection expects {self.in_channels} channels ({b} original + "
                f"{self.in_channels - b} condition), got {x.shape[1]}"
            )
        out = self._conv_forward(x[:, :b], self.weight[:, :b], self.bias)
        if self.in_channels > b:
            out = out + self._conv_forward(x[:, b:], self.weight[:, b:], None)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", base_in_channels={self.base_in_channels}"


class ZeroExpandedConv2d(_SplitInputConv, nn.Conv2d):
    """nn.Conv2d whose input channels ``[base_in_channels:]`` were added (zero-initialised) after pretraining."""


class ZeroExpandedConv3d(_SplitInputConv, nn.Conv3d):
    """nn.Conv3d whose input channels ``[base_in_channels:]`` were added (zero-initialised) after pretraining."""


_EXPANDED = {nn.Conv2d: ZeroExpandedConv2d, nn.Conv3d: ZeroExpandedConv3d}


def _plain_type(module: nn.Module) -> type:
    for plain in (nn.Conv2d, nn.Conv3d):
        if isinstance(module, plain):
            return plain
    raise NeuralRenderError(f"can only expand nn.Conv2d / nn.Conv3d input projections, got {type(module).__name__}")


def _clone_conv(module: nn.Module, in_channels: int, base_in_channels: int) -> nn.Module:
    plain = _plain_type(module)
    if module.groups != 1:
        raise NeuralRenderError(f"cannot expand a grouped conv (groups={module.groups})")
    new = _EXPANDED[plain](
        in_channels,
        module.out_channels,
        kernel_size=module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=1,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
        device=module.weight.device,
        dtype=module.weight.dtype,
    )
    new.base_in_channels = int(base_in_channels)
    new.weight.requires_grad_(module.weight.requires_grad)
    if module.bias is not None:
        new.bias.requires_grad_(module.bias.requires_grad)
    return new


def expand_input_channels(module: nn.Conv2d | nn.Conv3d, extra: int) -> nn.Conv2d | nn.Conv3d:
    """Return a conv taking ``extra`` more input channels (appended last) whose new weights are zero.

    module: pretrained nn.Conv2d / nn.Conv3d (or an already expanded one: its original channel count is
    kept as ``base_in_channels``). extra: >= 0; 0 returns ``module`` itself. The returned module gives
    bit-identical outputs to ``module`` on ``x[:, :C0]`` for any ``x`` (see module docstring).
    """
    extra = int(extra)
    if extra < 0:
        raise NeuralRenderError(f"extra input channels must be >= 0, got {extra}")
    if extra == 0:
        return module
    base = getattr(module, "base_in_channels", module.in_channels)
    new = _clone_conv(module, module.in_channels + extra, base)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : module.in_channels].copy_(module.weight)
        if module.bias is not None:
            new.bias.copy_(module.bias)
    return new


def as_expanded(module: nn.Conv2d | nn.Conv3d, base_in_channels: int) -> nn.Conv2d | nn.Conv3d:
    """Re-wrap a loaded plain conv (weights kept, not zeroed) so it computes in the split form.

    Used when loading a saved expanded backbone: the diffusers class builds a plain conv with
    ``C0 + extra`` inputs; wrapping it restores the exact computation of the model that was saved.
    """
    base_in_channels = int(base_in_channels)
    if not 0 < base_in_channels <= module.in_channels:
        raise NeuralRenderError(
            f"base_in_channels {base_in_channels} must be in 1..{module.in_channels} (the conv's input channels)"
        )
    if base_in_channels == module.in_channels and not hasattr(module, "base_in_channels"):
        return module
    new = _clone_conv(module, module.in_channels, base_in_channels)
    with torch.no_grad():
        new.weight.copy_(module.weight)
        if module.bias is not None:
            new.bias.copy_(module.bias)
    return new


def attach_condition_channels(model: nn.Module, attr: str, latent_channels: int, cond_channels: int | None,
                              base_in_channels: int | None) -> tuple[int, int]:
    """Give a diffusers model's input projection ``model.<attr>`` room for ``cond_channels`` condition channels.

    The model natively takes ``in_channels - latent_channels`` condition channels; ``cond_channels`` (None =
    native) may only add to those: the extra ones are zero-initialised (:func:`expand_input_channels`) and the
    model's config is updated. ``base_in_channels`` re-wraps a loaded, already expanded projection
    (:func:`as_expanded`). Returns ``(cond_channels, base_in_channels)``.
    """
    cfg = model.config
    name = type(model).__name__
    if base_in_channels is not None:
        setattr(model, attr, as_expanded(getattr(model, attr), base_in_channels))
    native = int(cfg.in_channels) - int(latent_channels)
    if native < 0:
        raise NeuralRenderError(f"{name} in_channels {cfg.in_channels} < out_channels {latent_channels}")
    cond = native if cond_channels is None else int(cond_channels)
    if cond < native:
        raise NeuralRenderError(f"this {name} takes {native} condition channels natively (in_channels - out_channels); "
                                f"cond_channels={cond} must be >= {native}")
    if cond > native:
        setattr(model, attr, expand_input_channels(getattr(model, attr), cond - native))
        model.register_to_config(in_channels=int(cfg.in_channels) + cond - native)
    proj = getattr(model, attr)
    return cond, int(getattr(proj, "base_in_channels", proj.in_channels))
