"""One object that owns preconditioning, the training loss and the sampler (k-diffusion style).

Every network call, in training and in sampling, goes through :meth:`Denoiser.network_output`, which
applies the preconditioning of :meth:`Denoiser.precondition`; :meth:`Denoiser.predict_x0` and
:meth:`Denoiser.loss` are both built on it, so the loss and the sampler cannot drift apart.

Kinds (``sigma`` is the noise level; per frame, shape (B, T); 0 = clean):

``"flow"`` (Wan, rectified flow):  x_t = (1 - s) x0 + s eps, s in [0, 1]; network predicts v = eps - x0 at
    timestep 1000 s; x0 = x_t - s v.  Sampling schedule from diffusers ``FlowMatchEulerDiscreteScheduler`` (``shift``).
``"edm"`` (SVD, Karras 2022 with the network in v-prediction form):  x_t = x0 + sigma eps,
    sigma ~ lognormal(p_mean, p_std); x0 = c_skip x_t + c_out F(c_in x_t; c_noise) with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = -sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
    c_noise = 0.25 ln(sigma) (SVD's ``VScalingWithEDMcNoise`` for sd = 1). Schedule from diffusers
    ``EulerDiscreteScheduler`` (v_prediction, Karras sigmas, continuous timesteps) as in the SVD pipeline.
``"x0"`` (Lotus / E2E-FT single step):  noised frames are replaced by zeros (sigma = 1), the network is called
    at the fixed timestep ``x0_timestep`` and outputs x0 directly; sampling is one call.

The loss is the MSE between network output and its target ``(x0 - c_skip x_t) / c_out`` — identical to
``(predict_x0 - x0)^2 / c_out^2`` (v-loss for flow, EDM weighting for edm, plain x0 MSE for x0).
Frames marked clean (``clean_frames``, IC-LoRA references) are given un-noised at sigma 0 and never enter the loss.

The sampler is Euler written in x0 form, ``x_next = x0_hat + (sigma_next / sigma) (x_t - x0_hat)``, which equals
diffusers' ``step()`` of the two schedulers above (tested) but also handles per-frame sigmas (clean frames).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from neural_render.errors import NeuralRenderError

KINDS = ("flow", "edm", "x0")
CONFIG_NAME = "denoiser_config.json"


@dataclass
class Preconditioning:
    """Coefficients for x0 = c_skip x_t + c_out F(c_in x_t, c_noise). c_*: (B, T, 1, 1, 1); c_noise: (B, T)."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def drop_condition(cond: Tensor | None, context: Tensor | None, p: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """Classifier-free-guidance dropout: per sample, with probability ``p``, zero ``cond`` and ``context``.

    cond: (B, T, Cc, h, w) or None; context: (B, L, D) or None. Returns (cond, context, keep) with keep: (B,) bool
    (True = condition kept). Zeros are the "unconditional" input the sampler uses by default.
    """
    ref = cond if cond is not None else context
    if ref is None:
        raise NeuralRenderError("drop_condition needs cond or context")
    if not 0.0 <= p <= 1.0:
        raise NeuralRenderError(f"condition dropout probability must be in [0, 1], got {p}")
    gen_device = generator.device if generator is not None else ref.device
    keep = (torch.rand(ref.shape[0], generator=generator, device=gen_device) >= p).to(ref.device)
    if cond is not None:
        cond = torch.where(keep.view(-1, *([1] * (cond.ndim - 1))), cond, torch.zeros_like(cond))
    if context is not None:
        context = torch.where(keep.view(-1, *([1] * (context.ndim - 1))), context, torch.zeros_like(context))
    return cond, context, keep


def _frames(x: Tensor) -> Tensor:
    """(B, T) -> (B, T, 1, 1, 1) for broadcasting against (B, T, C, h, w)."""
    return x[:, :, None, None, None]


def _randn(shape, generator: torch.Generator | None, device, dtype) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


class Denoiser(SchedulerMixin):
    """Preconditioning + loss + sampler for one diffusion formulation (see module docstring).

    A diffusers ``SchedulerMixin`` (the pipeline component diffusers' loader reads with :meth:`from_pretrained`);
    its folder is ``denoiser_config.json`` (:attr:`config`).

    Args:
        kind: "flow" | "edm" | "x0".
        shift: flow-matching timestep shift s' = shift s / (1 + (shift - 1) s), used in training and sampling.
        flow_sampling: training distribution of s before the shift: "logit_normal" (SD3) or "uniform".
        logit_mean, logit_std: parameters of the logit-normal training distribution of s.
        p_mean, p_std: EDM training distribution ln sigma ~ N(p_mean, p_std^2).
        sigma_data: EDM data standard deviation (SVD: 1.0).
        sigma_min, sigma_max: EDM sampling range (SVD: 0.002, 700); sigma_min also floors c_noise of clean frames.
        x0_timestep: network timestep used by the single-step "x0" kind.
        num_train_timesteps: flow timestep scale (timestep = s * num_train_timesteps).
    """

    def __init__(self, kind: str = "flow", shift: float = 3.0, flow_sampling: str = "logit_normal",
                 logit_mean: float = 0.0, logit_std: float = 1.0, p_mean: float = -1.2, p_std: float = 1.2,
                 sigma_data: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 700.0,
                 x0_timestep: float = 999.0, num_train_timesteps: int = 1000):
        if kind not in KINDS:
            raise NeuralRenderError(f"denoiser kind must be one of {KINDS}, got {kind!r}")
        if flow_sampling not in ("logit_normal", "uniform"):
            raise NeuralRenderError(f"flow_sampling must be 'logit_normal' or 'uniform', got {flow_sampling!r}")
        if shift <= 0 or sigma_data <= 0 or not 0 < sigma_min < sigma_max or p_std <= 0 or logit_std <= 0:
            raise NeuralRenderError("denoiser needs shift, sigma_data, p_std, logit_std > 0 and "
                                    "0 < sigma_min < sigma_max")
        self.kind = kind
        self.shift = float(shift)
        self.flow_sampling = flow_sampling
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.sigma_data = float(sigma_data)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.x0_timestep = float(x0_timestep)
        self.num_train_timesteps = int(num_train_timesteps)

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable); ``Denoiser(**d.config)`` rebuilds an equal denoiser."""
        return {"kind": self.kind, "shift": self.shift, "flow_sampling": self.flow_sampling,
                "logit_mean": self.logit_mean, "logit_std": self.logit_std, "p_mean": self.p_mean,
                "p_std": self.p_std, "sigma_data": self.sigma_data, "sigma_min": self.sigma_min,
                "sigma_max": self.sigma_max, "x0_timestep": self.x0_timestep,
                "num_train_timesteps": self.num_train_timesteps}

    def __repr__(self) -> str:
        return f"Denoiser({', '.join(f'{k}={v!r}' for k, v in self.config.items())})"

    def save_pretrained(self, directory: str | os.PathLike, **kwargs) -> None:
        """Write ``<directory>/denoiser_config.json`` (temp name + os.replace)."""
        from neural_render.io.atomic import atomic_path

        os.makedirs(directory, exist_ok=True)
        with atomic_path(os.path.join(directory, CONFIG_NAME)) as tmp, open(tmp, "w") as f:
            json.dump({"_class_name": "Denoiser", **self.config}, f, indent=2)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> "Denoiser":
        """Read ``<directory>/denoiser_config.json`` (NeuralRenderError naming it when missing or bad); ``kwargs``:
        diffusers' loading options, ignored (a denoiser has no weights)."""
        path = os.path.join(directory, CONFIG_NAME)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise NeuralRenderError(f"cannot read denoiser config: {err}", path) from err
        data.pop("_class_name", None)
        try:
            return cls(**data)
        except TypeError as err:
            raise NeuralRenderError(f"bad denoiser config: {err}", path) from err

    # ------------------------------------------------------------------ noise levels
    def _shifted(self, s: Tensor) -> Tensor:
        return self.shift * s / (1.0 + (self.shift - 1.0) * s)

    def sample_sigma(self, batch: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
        """Training noise level per sample, (B,) float32: flow s in (0, 1); edm sigma > 0; x0: ones."""
        gen_device = generator.device if generator is not None else device
        if self.kind == "x0":
            return torch.ones(batch, device=device)
        z = torch.randn(batch, generator=generator, device=gen_device).to(device)
        if self.kind == "edm":
            return torch.exp(self.p_mean + self.p_std * z)
        if self.flow_sampling == "uniform":
            s = torch.rand(batch, generator=generator, device=gen_device).to(device)
        else:
            s = torch.sigmoid(self.logit_mean + self.logit_std * z)
        return self._shifted(s).clamp(1e-5, 1.0)

    def add_noise(self, x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
        """x_t for x0, noise: (B, T, C, h, w) and sigma: (B, T) (0 = clean frame, returned unchanged)."""
        s = _frames(sigma).to(x0.dtype)
        if self.kind == "flow":
            return (1.0 - s) * x0 + s * noise
        if self.kind == "edm":
            return x0 + s * noise
        return torch.where(s > 0, torch.zeros_like(x0), x0)  # x0: noised frames are replaced by zeros

    def precondition(self, sigma: Tensor) -> Preconditioning:
        """Coefficients for noise levels sigma: (B, T) (see module docstring)."""
        s = _frames(sigma)
        if self.kind == "flow":
            return Preconditioning(torch.ones_like(s), -s, torch.ones_like(s), sigma * self.num_train_timesteps)
        if self.kind == "edm":
            sd2 = self.sigma_data ** 2
            norm = torch.sqrt(s * s + sd2)
            c_noise = 0.25 * torch.log(sigma.clamp_min(self.sigma_min))
            return Preconditioning(sd2 / norm ** 2, -s * self.sigma_data / norm, 1.0 / norm, c_noise)
        noised = (s > 0).to(s.dtype)
        return Preconditioning(1.0 - noised, noised, torch.ones_like(s), (sigma > 0).to(s.dtype) * self.x0_timestep)

    @staticmethod
    def backbone_timestep(c_noise: Tensor) -> Tensor:
        """(B, T) -> (B,) when all frames share a level (the common case), else (B, T) per-frame timesteps."""
        if c_noise.shape[1] == 1 or bool((c_noise == c_noise[:, :1]).all()):
            return c_noise[:, 0]
        return c_noise

    # ------------------------------------------------------------------ the one network call
    def network_output(self, backbone, x_t: Tensor, sigma: Tensor, cond: Tensor | None = None,
                       context: Tensor | None = None, added: dict | None = None) -> tuple[Tensor, Preconditioning]:
        """Raw network output F (B, T, C, h, w) for x_t at per-frame levels sigma (B, T), and the coefficients."""
        pre = self.precondition(sigma.to(device=x_t.device, dtype=torch.float32))
        raw = backbone(pre.c_in.to(x_t.dtype) * x_t, self.backbone_timestep(pre.c_noise), cond, context, added)
        if raw.shape != x_t.shape:
            raise NeuralRenderError(f"backbone output shape {tuple(raw.shape)} != input shape {tuple(x_t.shape)}")
        return raw, pre

    def predict_x0(self, backbone, x_t: Tensor, sigma: Tensor, cond: Tensor | None = None,
                   context: Tensor | None = None, added: dict | None = None) -> Tensor:
        """Denoised estimate x0_hat = c_skip x_t + c_out F, (B, T, C, h, w); sigma: (B, T) or (B,)."""
        sigma = self._per_frame(sigma, x_t)
        raw, pre = self.network_output(backbone, x_t, sigma, cond, context, added)
        return pre.c_skip.to(raw.dtype) * x_t + pre.c_out.to(raw.dtype) * raw

    @staticmethod
    def _per_frame(sigma: Tensor | float, x: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.ndim == 1:
            sigma = sigma[:, None].expand(x.shape[0], x.shape[1])
        if tuple(sigma.shape) != tuple(x.shape[:2]):
            raise NeuralRenderError(f"sigma shape {tuple(sigma.shape)} does not match (B, T) = {tuple(x.shape[:2])}")
        return sigma

    @staticmethod
    def _clean_mask(shape, device, clean_frames: Tensor | None, timestep_mask: Tensor | None) -> Tensor:
        """(B, T) bool of frames given clean; ``timestep_mask`` (True = noised) is the complement form."""
        clean = torch.zeros(shape[:2], dtype=torch.bool, device=device)
        for name, mask, invert in (("clean_frames", clean_frames, False), ("timestep_mask", timestep_mask, True)):
            if mask is None:
                continue
            mask = torch.as_tensor(mask, device=device)
            if tuple(mask.shape) != tuple(shape[:2]):
                raise NeuralRenderError(f"{name} must have shape (B, T) = {tuple(shape[:2])}, got {tuple(mask.shape)}")
            mask = mask.bool()
            clean = clean | (~mask if invert else mask)
        return clean

    # ------------------------------------------------------------------ training
    def loss(self, backbone, x0: Tensor, cond: Tensor | None = None, context: Tensor | None = None,
             generator: torch.Generator | None = None, **kwargs) -> Tensor:
        """Scalar training loss for clean latents x0: (B, T, C, h, w): the weighted mean of :meth:`loss_terms`
        (arguments as there)."""
        err, weight = self.loss_terms(backbone, x0, cond, context, generator, **kwargs)
        # all frames clean / fully masked -> 0 (with a graph); no host sync on the weight sum
        return (err * weight).sum() / weight.sum().clamp_min(torch.finfo(err.dtype).tiny)

    def loss_terms(self, backbone, x0: Tensor, cond: Tensor | None = None, context: Tensor | None = None,
                   generator: torch.Generator | None = None, loss_mask: Tensor | None = None,
                   timestep_mask: Tensor | None = None, clean_frames: Tensor | None = None, added: dict | None = None,
                   sigma: Tensor | None = None, noise: Tensor | None = None,
                   x0_add: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(squared error, weight), both (B, T, C, h, w) float32, of the training objective for clean latents x0:
        (B, T, C, h, w); :meth:`loss` is their weighted mean, a task may reduce them otherwise.

        cond: (B, T, Cc, h, w) | None; context: (B, L, D) | None; loss_mask: broadcastable to x0 (e.g. (B, T, 1, h, w)),
        weights each element (0 = excluded); clean_frames: (B, T) bool, frames given clean at sigma 0 and excluded from
        the loss (IC-LoRA references); timestep_mask: (B, T) bool, the complement form (True = noised, False = clean).
        sigma: (B,) noise levels (default: drawn from the training distribution); noise: like x0 (default: N(0, 1)).
        Random draws use ``generator`` (its device) when given. x0_add: like x0, a known term ADDED to the model's x0
        prediction (x0_hat = c_skip x_t + c_out F + x0_add, e.g. the cache injection's shadow residual): the
        network's target becomes ``(x0 - x0_add - c_skip x_t) / c_out``, and gradients reach x0_add's parameters.
        """
        if x0.ndim != 5:
            raise NeuralRenderError(f"x0 must be (B, T, C, h, w), got shape {tuple(x0.shape)}")
        b, t = x0.shape[:2]
        clean = self._clean_mask(x0.shape, x0.device, clean_frames, timestep_mask)
        if sigma is None:
            sigma = self.sample_sigma(b, generator, x0.device)
        sigma = self._per_frame(sigma, x0).masked_fill(clean, 0.0)
        if noise is None:
            noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = self.add_noise(x0, noise, sigma)
        raw, pre = self.network_output(backbone, x_t, sigma, cond, context, added)
        c_out = torch.where(_frames(clean), torch.ones_like(pre.c_out), pre.c_out).to(raw.dtype)
        if x0_add is not None and tuple(x0_add.shape) != tuple(x0.shape):
            raise NeuralRenderError(f"x0_add shape {tuple(x0_add.shape)} != x0 shape {tuple(x0.shape)}")
        known = x0 if x0_add is None else x0 - x0_add.to(x0.dtype)
        target = (known - pre.c_skip.to(raw.dtype) * x_t) / c_out
        err = (raw.float() - target.float()) ** 2
        weight = (~_frames(clean)).to(err.dtype).expand_as(err)
        if loss_mask is not None:
            loss_mask = torch.as_tensor(loss_mask, device=x0.device)
            try:
                weight = weight * torch.broadcast_to(loss_mask.to(err.dtype), err.shape)
            except RuntimeError as e:
                raise NeuralRenderError(f"loss_mask shape {tuple(loss_mask.shape)} does not broadcast to "
                                        f"{tuple(err.shape)}") from e
        return err, weight

    # ------------------------------------------------------------------ sampling
    def sampling_sigmas(self, num_steps: int) -> Tensor:
        """Descending noise levels (num_steps + 1,) float32 ending at 0, from the diffusers scheduler of this kind."""
        if num_steps < 1:
            raise NeuralRenderError(f"num_steps must be >= 1, got {num_steps}")
        if self.kind == "x0":
            return torch.tensor([1.0, 0.0])
        if self.kind == "flow":
            from diffusers import FlowMatchEulerDiscreteScheduler

            sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=self.shift)
        else:
            from diffusers import EulerDiscreteScheduler

            sched = EulerDiscreteScheduler(
                num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                prediction_type="v_prediction", use_karras_sigmas=True, sigma_min=self.sigma_min,
                sigma_max=self.sigma_max, timestep_type="continuous", interpolation_type="linear",
                timestep_spacing="leading", steps_offset=1)
        sched.set_timesteps(num_steps, device="cpu")
        return sched.sigmas.detach().to(torch.float32).clone()

    @staticmethod
    def step(x_t: Tensor, x0_hat: Tensor, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        """Euler step in x0 form; sigma, sigma_next: (B, T). Frames with sigma = 0 return x0_hat (== x_t when clean)."""
        s, s_next = _frames(sigma).to(x_t.dtype), _frames(sigma_next).to(x_t.dtype)
        ratio = torch.where(s > 0, s_next / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
        return x0_hat + ratio * (x_t - x0_hat)

    def guided_x0(self, backbone, x_t: Tensor, sigma: Tensor, cond: Tensor | None, context: Tensor | None,
                  guidance_scale: float = 1.0, uncond_cond: Tensor | None = None, uncond_context: Tensor | None = None,
                  added: dict | None = None) -> Tensor:
        """x0_hat with classifier-free guidance: x0_u + g (x0_c - x0_u); uncond defaults to zeroed cond/context."""
        x0_c = self.predict_x0(backbone, x_t, sigma, cond, context, added)
        if guidance_scale == 1.0:
            return x0_c
        if uncond_cond is None and cond is not None:
            uncond_cond = torch.zeros_like(cond)
        if uncond_context is None and context is not None:
            uncond_context = torch.zeros_like(context)
        x0_u = self.predict_x0(backbone, x_t, sigma, uncond_cond, uncond_context, added)
        return x0_u + guidance_scale * (x0_c - x0_u)

    @torch.no_grad()
    def sample(self, backbone, shape: tuple[int, ...], cond: Tensor | None = None, context: Tensor | None = None,
               num_steps: int = 25, generator: torch.Generator | None = None, guidance_scale: float = 1.0,
               uncond_cond: Tensor | None = None, uncond_context: Tensor | None = None,
               clean: tuple[Tensor, Tensor] | None = None,
               callback: Callable[[int, Tensor], Tensor | None] | None = None, added: dict | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Generate x0 of ``shape`` (B, T, C, h, w) in latent space.

        clean: (frames (B, T, C, h, w), mask (B, T) bool): masked frames are held at the given values at every step
        and seen by the network at sigma 0. callback(step, x_t) runs after every step (step = 0 .. num_steps - 1) on the
        new x_t; if it returns a tensor, that replaces x_t (latent-space window blending). ``x0`` kind: one call.
        """
        if len(shape) != 5:
            raise NeuralRenderError(f"sample shape must be (B, T, C, h, w), got {tuple(shape)}")
        if device is None:
            ref = cond if cond is not None else context
            device = ref.device if ref is not None else next(backbone.parameters()).device
        b, t = shape[:2]
        clean_mask = torch.zeros(b, t, dtype=torch.bool, device=device)
        clean_values = torch.zeros(shape, device=device, dtype=dtype)
        if clean is not None:
            clean_values, clean_mask = clean
            clean_mask = self._clean_mask(shape, device, clean_mask, None)
            clean_values = clean_values.to(device=device, dtype=dtype)
            if tuple(clean_values.shape) != tuple(shape):
                raise NeuralRenderError(f"clean frames shape {tuple(clean_values.shape)} != sample shape "
                                        f"{tuple(shape)}")
        keep_clean = _frames(clean_mask)
        sigmas = self.sampling_sigmas(num_steps).to(device)
        levels = sigmas[0].expand(b, t).masked_fill(clean_mask, 0.0)
        x = self.add_noise(clean_values, _randn(shape, generator, device, dtype), levels)
        for i in range(len(sigmas) - 1):
            levels = sigmas[i].expand(b, t).masked_fill(clean_mask, 0.0)
            next_levels = sigmas[i + 1].expand(b, t).masked_fill(clean_mask, 0.0)
            x = torch.where(keep_clean, clean_values, x)
            x0_hat = self.guided_x0(backbone, x, levels, cond, context, guidance_scale, uncond_cond, uncond_context,
                                    added)
            x = torch.where(keep_clean, clean_values, self.step(x, x0_hat, levels, next_levels))
            if callback is not None:
                replaced = callback(i, x)
                if replaced is not None:
                    x = torch.where(keep_clean, clean_values, replaced)
        return x

