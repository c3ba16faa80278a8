"""Exponential moving average (EMA) of a named set of parameters.

``shadow <- d * shadow + (1 - d) * param`` after every optimiser step, with
``d = min(decay, (1 + n) / (10 + n))`` when ``warmup`` is on (n = updates so far), so early averages are not
dominated by the random initialisation. Parameters are matched by name (``module.named_parameters()``), so the
EMA keeps working when a strategy wraps the module. The shadow weights are used for validation and export
(:meth:`ExponentialMovingAverage.swapped`) and travel in checkpoints (:meth:`state_dict`).
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
        if not 0.0 <= decay < 1.0:
            raise NeuralRenderError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {name: p.detach().clone() for name, p in named_params}

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def _matched(self, named_params: Iterable[tuple[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        given = dict(named_params)
        missing = [name for name in self.shadow if name not in given]
        if missing:
            raise NeuralRenderError(f"EMA: parameters missing from the module: {missing[:5]}")
        pairs = []
        for name, shadow in self.shadow.items():
            param = given[name]
            if shadow.shape != param.shape:
                raise NeuralRenderError(f"EMA: shape of {name} changed {tuple(shadow.shape)} -> {tuple(param.shape)}")
            if shadow.device != param.device or shadow.dtype != param.dtype:
                shadow = self.shadow[name] = shadow.to(device=param.device, dtype=param.dtype)
            pairs.append((shadow, param))
        return pairs

    @torch.no_grad()
    def update(self, named_params: Iterable[tuple[str, Tensor]]) -> None:
        """One EMA step towards the current parameter values."""
        weight = 1.0 - self.current_decay()
        for shadow, param in self._matched(named_params):
            shadow.lerp_(param.detach(), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, named_params: Iterable[tuple[str, Tensor]]) -> None:
        """Overwrite the parameters with the shadow values."""
        for shadow, param in self._matched(named_params):
            param.copy_(shadow)

    @contextlib.contextmanager
    def swapped(self, named_params: Iterable[tuple[str, Tensor]]) -> Iterator[None]:
        """Context in which the parameters hold the EMA weights; the live weights are restored on exit."""
        pairs = self._matched(named_params)
        backup = [param.detach().clone() for _, param in pairs]
        with torch.no_grad():
            for shadow, param in pairs:
                param.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, param), saved in zip(pairs, backup):
                    param.copy_(saved)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {name: t.detach().clone() for name, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        shadow = state.get("shadow")
        if not isinstance(shadow, dict) or set(shadow) != set(self.shadow):
            extra = sorted(set(shadow or {}) ^ set(self.shadow))[:5]
            raise NeuralRenderError(f"EMA state does not match the tracked parameters (differing: {extra})")
        for name, value in shadow.items():
            if tuple(value.shape) != tuple(self.shadow[name].shape):
                raise NeuralRenderError(f"EMA state: shape of {name} is {tuple(value.shape)}, "
                                        f"expected {tuple(self.shadow[name].shape)}")
            self.shadow[name] = value.detach().clone().to(self.shadow[name].device, self.shadow[name].dtype)
        self.decay = float(state.get("decay", self.decay))
        self.warmup = bool(state.get("warmup", self.warmup))
        self.num_updates = int(state.get("num_updates", 0))
