"""Exponential moving average (EMA) of a named set of parameters, on diffusers' ``EMAModel``.

``shadow <- d * shadow + (1 - d) * param`` after every optimiser step, with
``d = min(decay, (1 + n) / (10 + n))`` when ``warmup`` is on (n = updates so far), so early averages are not
dominated by the random initialisation. Parameters are matched by name (``module.named_parameters()``), so the
EMA keeps working when a strategy wraps the module. The shadow weights are used for validation and export
(:meth:`ExponentialMovingAverage.swapped`) and travel in checkpoints (:meth:`state_dict`).

diffusers' ``EMAModel`` holds the shadow tensors and does the averaging (``step``, foreach kernels) and the copy into
the module (``copy_to``). What this wrapper adds, and why EMAModel alone does not do it:

* the decay schedule: EMAModel's ``get_decay`` returns 0 (a plain copy) at the first step and always applies its own
  warm-up ramp, where this schedule keeps 10 % of the initial weights at the first update and has a constant-decay
  mode (``warmup=False``). Each update therefore pins EMAModel's ``decay`` and ``min_decay`` to this schedule's value
  (and ``update_after_step=-1`` removes its first-step copy), so ``get_decay`` returns exactly that value;
* matching by NAME with clear errors (EMAModel pairs tensors by position): a renamed, missing or reshaped parameter
  raises NeuralRenderError instead of averaging the wrong tensors; shadows follow the parameters' device and dtype;
* :meth:`swapped` keeps its own backup per context (EMAModel's ``store`` / ``restore`` keep one slot on the host, so
  nested swaps -- validation that exports -- would fail);
* the checkpoint format ``{"decay", "warmup", "num_updates", "shadow": {name: tensor}}`` of the Lightning checkpoints
  written so far (EMAModel's state is a positional ``shadow_params`` list with other keys).

Shipped models do not depend on this class: their exported weights already are the EMA weights. EMAModel copies
(rather than averages) a tracked parameter with ``requires_grad=False``; the tasks track only trainable parameters,
and a frozen parameter's average is its value anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError


class ExponentialMovingAverage:
    """EMA of named tensors. named_params: iterable of (name, parameter); shadows start as copies of them."""

    def __init__(self, named_params: Iterable[tuple[str, Tensor]], decay: float = 0.999, warmup: bool = True):
        from diffusers.training_utils import EMAModel

        if not 0.0 <= decay < 1.0:
            raise NeuralRenderError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        named = list(named_params)
        self.names = [name for name, _ in named]
        self._ema = EMAModel([p for _, p in named], decay=self.decay, update_after_step=-1, foreach=True)

    @property
    def num_updates(self) -> int:
        """Updates so far (EMAModel's ``optimization_step``)."""
        return self._ema.optimization_step

    @num_updates.setter
    def num_updates(self, value: int) -> None:
        self._ema.optimization_step = int(value)

    @property
    def shadow(self) -> dict[str, Tensor]:
        """{name: shadow tensor} (the tensors themselves, not copies)."""
        return dict(zip(self.names, self._ema.shadow_params))

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def _matched(self, named_params: Iterable[tuple[str, Tensor]]) -> list[Tensor]:
        """The parameters in shadow order (checked by name and shape); shadows moved to their device / dtype."""
        given = dict(named_params)
        missing = [name for name in self.names if name not in given]
        if missing:
            raise NeuralRenderError(f"EMA: parameters missing from the module: {missing[:5]}")
        params = []
        for i, (name, shadow) in enumerate(zip(self.names, self._ema.shadow_params)):
            param = given[name]
            if shadow.shape != param.shape:
                raise NeuralRenderError(f"EMA: shape of {name} changed {tuple(shadow.shape)} -> {tuple(param.shape)}")
            if shadow.device != param.device or shadow.dtype != param.dtype:
                self._ema.shadow_params[i] = shadow.to(device=param.device, dtype=param.dtype)
            params.append(param)
        return params

    @torch.no_grad()
    def update(self, named_params: Iterable[tuple[str, Tensor]]) -> None:
        """One EMA step towards the current parameter values."""
        params = self._matched(named_params)
        self._ema.decay = self._ema.min_decay = self.current_decay()  # EMAModel.get_decay -> exactly this (module doc)
        self._ema.step(params)

    @torch.no_grad()
    def copy_to(self, named_params: Iterable[tuple[str, Tensor]]) -> None:
        """Overwrite the parameters with the shadow values."""
        self._ema.copy_to(self._matched(named_params))

    @contextlib.contextmanager
    def swapped(self, named_params: Iterable[tuple[str, Tensor]]) -> Iterator[None]:
        """Context in which the parameters hold the EMA weights; the live weights are restored on exit."""
        params = self._matched(named_params)
        backup = [param.detach().clone() for param in params]
        with torch.no_grad():
            self._ema.copy_to(params)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, saved in zip(params, backup):
                    param.copy_(saved)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {name: t.detach().clone() for name, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        shadow = state.get("shadow")
        if not isinstance(shadow, dict) or set(shadow) != set(self.names):
            extra = sorted(set(shadow or {}) ^ set(self.names))[:5]
            raise NeuralRenderError(f"EMA state does not match the tracked parameters (differing: {extra})")
        current = self._ema.shadow_params
        for i, name in enumerate(self.names):
            value = shadow[name]
            if tuple(value.shape) != tuple(current[i].shape):
                raise NeuralRenderError(f"EMA state: shape of {name} is {tuple(value.shape)}, "
                                        f"expected {tuple(current[i].shape)}")
            current[i] = value.detach().clone().to(current[i].device, current[i].dtype)
        self.decay = float(state.get("decay", self.decay))
        self.warmup = bool(state.get("warmup", self.warmup))
        self.num_updates = int(state.get("num_updates", 0))
