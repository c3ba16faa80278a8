"""Soft, spatially aligned 3D-cache injection (Real2SAM2Real) into a video backbone's patch-embedded tokens.

Mechanism (one forward call)::

    cache render (normal (B,T,3,H,W) camera space, mask (B,T,1,H,W))
      -> packed normals n * mask in [-1, 1] -> frozen codec -> cache latents z_c (B,T',C,h,w)
      -> [z_c, area-pooled mask (B,T',1,h,w)] -> zero-initialised projection P (Conv3d with the SAME kernel /
         stride / padding as the backbone's input projection: SVD conv_in 3x3, Wan patch_embedding = patch)
      -> tokens (B,T'',D,h',w') on the backbone's token grid
      -> token_add = strength * soft_mask * P(...)  ->  backbone(..., added={"token_add": token_add})

With ``shadow=True`` the cache render also carries the cache's SHADOW map o (B,T,1,H,W) in [0, 1]: the share of
the env's diffuse light its entities block at each scene pixel (:func:`neural_render.raster.shadow.env_occlusion`,
ray cast from the 3D meshes, information a 2.5D G-buffer does not hold); it is encoded like the normals
(:func:`pack_cache_shadow`), its latents are concatenated before P (input 2C + 1 channels), and the soft mask
covers the shadow region (o > :data:`SHADOW_REGION`) as well as the object. With ``received_shadow=True`` the map
on the object's own pixels is the light the SCENE (lifted from its G-buffer) and the object block from it
(:func:`neural_render.raster.shadow.mutual_occlusion`): the object receives the scene's shadow, not only casts its
own. The module computes the same either way; the flag tells the pipeline and the data which map to make.

With ``shadow_residual=True`` the cache's shadow also reaches the model's OUTPUT, not only its input tokens: the
light the shadow takes from the forward model's split-sum prior, in the latent space the residual model predicts
in (:func:`blocked_light_latents`: E(display(prior)) - E(display(prior * (1 - o)))), is subtracted from the
predicted x0 with a learned per-latent-channel gain g that starts at exactly zero (:meth:`CacheInjection.x0_add`,
``-strength * g * blocked``). A shadow darkens what it falls on multiplicatively; the token path must learn that
product through the whole backbone, while this path makes it a linear, physically placed correction (a classical
differential-rendering shadow whose depth is learned; the token path keeps refining it). A probe before it
existed (16 validation insertions): subtracting 0.5-0.75 x the blocked light from the insertions of the model
without it raised object / around / shadow PSNR by about +0.8 / +0.7 / +0.9 dB.

where the backbone ADDS ``token_add`` to the output of its own input projection (the noisy latent + condition
tokens). ``soft_mask`` (B,T'',1,h',w') is the object's token coverage (area fraction) dilated with a linear falloff
over ``mask_dilation`` tokens, so the injection also reaches the neighbourhood where the object's shadow falls, and
``strength`` is the user's knob (0 = off). P's weight and bias start at exactly zero, so a fresh injection adds
exact zeros and the backbone's output is bit-identical to the model without it (tested with torch.equal).

Fine-tuning is minimally invasive: only P and a LoRA on the backbone train (:data:`TRAINABLE_PATTERNS`).
Training data without 3D ground truth: the masked normals of one object from synthetic G-buffers (or the inverse
renderer's estimate on real video) stand in for the cache render, degraded by :func:`perturb_cache_render`
(mask dilation, a shift, normal noise) so the model learns to trust the cache softly, not pixel-exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 - diffusers' loader finds from_pretrained through this name
from torch import Tensor, nn

from neural_render.errors import NeuralRenderError
from neural_render.models.persistence import LocalModelMixin

#: parameter-name patterns of a DiffusionSystem that train during cache-injection fine-tuning
TRAINABLE_PATTERNS = ("injection.*", "backbone.*lora_*")
#: shadow values above this count as the shadow region of the soft mask
SHADOW_REGION = 0.02


def pack_cache_normals(normal: Tensor, mask: Tensor) -> Tensor:
    """Masked camera-space normals (B,T,3,H,W) -> codec input in [-1, 1] (background 0)."""
    return (normal * mask).clamp(-1.0, 1.0)


def pack_cache_shadow(shadow: Tensor, light: Tensor | None = None) -> Tensor:
    """Cache shadow map (B,T,1,H,W) in [0, 1] -> codec input (B,T,3,H,W).

    light None: the map itself in every channel. light (B,T,3,H,W) linear radiance (the forward model's split-sum
    prior): the BLOCKED LIGHT in the display space the forward model predicts in, display(light) -
    display(light * (1 - shadow)) in [0, 2]: what a classical differential render would take away, so the model
    only has to learn how much of it to remove (a linear use of the injected tokens).
    """
    o = shadow.clamp(0.0, 1.0)
    if light is None:
        return o.expand(*shadow.shape[:2], 3, *shadow.shape[3:])
    from neural_render.models.conditioning import display_pack

    return display_pack(light) - display_pack(light * (1.0 - o))


def blocked_light_latents(encode, shadow: Tensor, light: Tensor) -> Tensor:
    """Latents of the light a shadow takes away: ``encode(display_pack(light)) - encode(display_pack(light * (1 -
    o)))`` for shadow o (B,T,1,H,W) in [0, 1] and light (B,T,3,H,W) linear radiance (the split-sum prior); encode:
    the frozen codec's encode (a difference of encodings, so it holds for non-linear codecs too). Zero where o = 0."""
    from neural_render.models.conditioning import display_pack

    o = shadow.clamp(0.0, 1.0)
    return encode(display_pack(light)) - encode(display_pack(light * (1.0 - o)))


def temporal_pool(x: Tensor, latent_frames: int) -> Tensor:
    """(B,T,C,H,W) -> (B,T',C,H,W) by max over the frames each latent frame covers.

    T' == T: identity. Causal video codecs (Wan VAE, T = 1 + 4k -> T' = 1 + k): frame 0 alone, then groups of
    (T - 1) / (T' - 1) frames. Other combinations raise.
    """
    t = x.shape[1]
    if latent_frames == t:
        return x
    if latent_frames < 1 or latent_frames > t or (latent_frames > 1 and (t - 1) % (latent_frames - 1)):
        raise NeuralRenderError(f"cannot map {t} frames onto {latent_frames} latent frames")
    if latent_frames == 1:
        return x.amax(dim=1, keepdim=True)
    group = (t - 1) // (latent_frames - 1)
    rest = x[:, 1:].unflatten(1, (latent_frames - 1, group)).amax(dim=2)
    return torch.cat([x[:, :1], rest], dim=1)


def area_pool(mask: Tensor, size: tuple[int, int, int]) -> Tensor:
    """(B,T,1,H,W) coverage -> (B,T'',1,h',w') mean coverage of each cell (adaptive average pooling)."""
    pooled = F.adaptive_avg_pool3d(mask.permute(0, 2, 1, 3, 4).float(), size)
    return pooled.permute(0, 2, 1, 3, 4)


def soft_dilate(mask: Tensor, radius: int) -> Tensor:
    """(B,T,1,h,w) in [0,1] -> max over cells within Chebyshev distance r <= radius of value * (1 - r/(radius+1))."""
    if radius <= 0:
        return mask
    flat = mask.flatten(0, 1)
    out = flat
    for r in range(1, radius + 1):
        grown = F.max_pool2d(flat, 2 * r + 1, stride=1, padding=r)
        out = torch.maximum(out, grown * (1.0 - r / (radius + 1)))
    return out.unflatten(0, mask.shape[:2])


def _input_projection(backbone) -> nn.Module:
    model = getattr(backbone, "model", None)
    for name in ("patch_embedding", "conv_in"):
        module = getattr(model, name, None)
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            return module
    raise NeuralRenderError(f"backbone {type(backbone).__name__} has no conv_in / patch_embedding input projection")


class CacheInjection(LocalModelMixin):
    """Zero-initialised patch embedding of cache latents, scaled by a soft mask and a strength (see module doc).

    latent_channels: C of the codec latents of the cache render. token_dim: D of the backbone's tokens.
    kernel_size / stride / padding: 3-tuples (t, h, w) of the projection, equal to the backbone's input projection
    (use :meth:`for_backbone`). mask_dilation: soft-mask falloff radius in tokens. strength: default strength.
    shadow: the cache render also holds the cache's shadow map (module docstring). shadow_light: it is packed as
    the blocked light of the forward model's prior (:func:`pack_cache_shadow` with ``light``), not as the bare map.
    received_shadow: on the object's pixels the map is the scene's shadow on it (module docstring).
    shadow_residual: the blocked light is also subtracted from the predicted x0 with a zero-initialised learned
    per-channel gain (:meth:`x0_add`, module docstring).
    """

    @register_to_config
    def __init__(self, latent_channels: int = 12, token_dim: int = 32, kernel_size=(1, 1, 1), stride=(1, 1, 1),
                 padding=(0, 0, 0), mask_dilation: int = 1, strength: float = 1.0, shadow: bool = False,
                 shadow_light: bool = False, received_shadow: bool = False, shadow_residual: bool = False):
        super().__init__()
        if (shadow_light or received_shadow or shadow_residual) and not shadow:
            raise NeuralRenderError("shadow_light, received_shadow and shadow_residual need shadow=True")
        if int(latent_channels) < 1 or int(token_dim) < 1 or int(mask_dilation) < 0:
            raise NeuralRenderError("CacheInjection needs latent_channels, token_dim >= 1 and mask_dilation >= 0")
        inputs = int(latent_channels) * (2 if shadow else 1) + 1
        self.proj = nn.Conv3d(inputs, int(token_dim), tuple(kernel_size), tuple(stride),
                              tuple(padding))
        self.shadow_gain = nn.Parameter(torch.zeros(int(latent_channels))) if shadow_residual else None
        self.mask_dilation = int(mask_dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weight, bias (and shadow gain): the injection adds exact zeros until trained."""
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()
            if self.shadow_gain is not None:
                self.shadow_gain.zero_()

    @classmethod
    def for_backbone(cls, backbone, latent_channels: int, mask_dilation: int = 1, strength: float = 1.0,
                     shadow: bool = False, shadow_light: bool = False, received_shadow: bool = False,
                     shadow_residual: bool = False) -> CacheInjection:
        """Projection geometry copied from the backbone's input projection; D = ``backbone.token_dim``."""
        module = _input_projection(backbone)
        if isinstance(module, nn.Conv3d):
            kernel, stride, padding = tuple(module.kernel_size), tuple(module.stride), tuple(module.padding)
        else:
            kernel = (1, *module.kernel_size)
            stride, padding = (1, *module.stride), (0, *module.padding)
        if isinstance(padding[0], str):
            raise NeuralRenderError("string padding of the backbone's input projection is not supported")
        return cls(int(latent_channels), int(backbone.token_dim), kernel, stride, padding, mask_dilation, strength,
                   bool(shadow), bool(shadow_light), bool(received_shadow), bool(shadow_residual))

    @property
    def needs_light(self) -> bool:
        """True when the injection needs the forward model's split-sum prior (shadow_light or shadow_residual)."""
        return bool(self.config.shadow_light or self.config.shadow_residual)

    def x0_add(self, blocked_latents: Tensor | None, strength: float | Tensor | None = None) -> Tensor | None:
        """Shadow residual (module docstring): blocked_latents (B,T',C,h,w) of :func:`blocked_light_latents` ->
        ``-strength * gain * blocked_latents``, added to the predicted x0 (the residual model's correction);
        None without ``shadow_residual`` or without a shadow."""
        if self.shadow_gain is None or blocked_latents is None:
            return None
        if blocked_latents.ndim != 5 or blocked_latents.shape[2] != self.config.latent_channels:
            raise NeuralRenderError(f"blocked-light latents must be (B,T',{self.config.latent_channels},h,w), "
                                    f"got {tuple(blocked_latents.shape)}")
        s = self.config.strength if strength is None else strength
        s = torch.as_tensor(s, dtype=blocked_latents.dtype, device=blocked_latents.device).reshape(-1, 1, 1, 1, 1)
        return -s * self.shadow_gain.view(1, 1, -1, 1, 1).to(blocked_latents.dtype) * blocked_latents

    def light_of(self, light: Tensor | None) -> Tensor | None:
        """The light to pack the shadow with: ``light`` for shadow_light injections, else None. Injections that need
        the light (:attr:`needs_light`: shadow_light, shadow_residual) refuse a missing one."""
        if self.needs_light and light is None:
            raise NeuralRenderError("this cache injection needs the light its shadow blocks: give the light (the "
                                    "split-sum prior)")
        return light if self.config.shadow_light else None

    @property
    def is_zero(self) -> bool:
        """True while the projection (and shadow gain) is exactly zero (fresh, never trained)."""
        gain_zero = self.shadow_gain is None or not bool(self.shadow_gain.any())
        return not bool(self.proj.weight.any()) and not bool(self.proj.bias.any()) and gain_zero

    def soft_mask(self, pixel_mask: Tensor, token_grid: tuple[int, int, int]) -> Tensor:
        """(B,T,1,H,W) -> (B,T'',1,h',w') soft token mask in [0, 1] (coverage + linear falloff)."""
        t_tok = token_grid[0]
        m = temporal_pool(pixel_mask, t_tok) if pixel_mask.shape[1] != t_tok else pixel_mask
        return soft_dilate(area_pool(m, tuple(token_grid)), self.mask_dilation)

    def forward(self, cache_latents: Tensor, pixel_mask: Tensor, strength: float | Tensor | None = None,
                shadow_latents: Tensor | None = None, shadow: Tensor | None = None) -> Tensor:
        """cache_latents (B,T',C,h,w), pixel_mask (B,T,1,H,W) in [0,1], strength float or (B,) -> token_add
        (B,T'',D,h',w') on the backbone's token grid. With ``config.shadow``: shadow_latents (B,T',C,h,w) (codec
        latents of :func:`pack_cache_shadow`) and shadow (B,T,1,H,W), the map itself (for the soft mask)."""
        if cache_latents.ndim != 5 or cache_latents.shape[2] != self.config.latent_channels:
            raise NeuralRenderError(f"cache latents must be (B,T',{self.config.latent_channels},h,w), "
                                    f"got {tuple(cache_latents.shape)}")
        if pixel_mask.ndim != 5 or pixel_mask.shape[2] != 1 or pixel_mask.shape[0] != cache_latents.shape[0]:
            raise NeuralRenderError(f"cache mask must be (B,T,1,H,W) with B={cache_latents.shape[0]}, "
                                    f"got {tuple(pixel_mask.shape)}")
        b, t_lat, _, h, w = cache_latents.shape
        pixel_mask = pixel_mask.to(cache_latents)
        mask_lat = area_pool(temporal_pool(pixel_mask, t_lat), (t_lat, h, w))
        parts, region = [cache_latents], pixel_mask
        if self.config.shadow:
            if shadow_latents is None or shadow is None:
                raise NeuralRenderError("this cache injection was trained with shadow maps: give shadow_latents and "
                                        "shadow (the cache's env_occlusion)")
            if shadow_latents.shape != cache_latents.shape or shadow.shape != pixel_mask.shape:
                raise NeuralRenderError(f"shadow latents {tuple(shadow_latents.shape)} / map {tuple(shadow.shape)} "
                                        f"must match {tuple(cache_latents.shape)} / {tuple(pixel_mask.shape)}")
            parts.append(shadow_latents)
            region = torch.maximum(pixel_mask, (shadow.to(pixel_mask) > SHADOW_REGION).to(pixel_mask))
        x = torch.cat([*parts, mask_lat], dim=2).permute(0, 2, 1, 3, 4)
        tokens = self.proj(x.to(self.proj.weight.dtype)).permute(0, 2, 1, 3, 4)  # (B, T'', D, h', w')
        soft = self.soft_mask(region, tuple(tokens.shape[i] for i in (1, 3, 4)))
        s = self.config.strength if strength is None else strength
        s = torch.as_tensor(s, dtype=tokens.dtype, device=tokens.device).reshape(-1, 1, 1, 1, 1)
        if s.shape[0] not in (1, b):
            raise NeuralRenderError(f"strength must be a float or (B={b},), got {s.shape[0]} values")
        return s * soft * tokens

    def token_add(self, codec, normal: Tensor, mask: Tensor, strength: float | Tensor | None = None,
                  shadow: Tensor | None = None, light: Tensor | None = None) -> Tensor:
        """Cache render (normal (B,T,3,H,W), mask (B,T,1,H,W), shadow (B,T,1,H,W) or None; light (B,T,3,H,W) the
        prior for ``shadow_light`` injections) -> token_add, encoding with the frozen ``codec``."""
        with torch.no_grad():
            latents = codec.encode(pack_cache_normals(normal, mask))
            shadow_latents = None if shadow is None else codec.encode(pack_cache_shadow(shadow, self.light_of(light)))
        return self(latents, mask, strength, shadow_latents, shadow)


def token_frames(backbone, start: int, stop: int) -> slice:
    """Latent frames [start, stop) of a window -> the slice of token frames it covers (temporal patch p_t)."""
    p_t = int(getattr(backbone, "patch_size", (1,))[0]) if getattr(backbone, "kind", "") == "wan" else 1
    if start % p_t or stop % p_t:
        raise NeuralRenderError(f"window [{start}, {stop}) is not aligned to the temporal patch {p_t}")
    return slice(start // p_t, stop // p_t)


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Translate (..., H, W) by (dy, dx) pixels, zero fill (no wrap-around)."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def perturb_cache_render(normal: Tensor, mask: Tensor, generator: torch.Generator, max_dilation: int = 2,
                         max_shift: int = 2, noise_std: float = 0.15, probability: float = 0.5
                         ) -> tuple[Tensor, Tensor]:
    """Degrade a stand-in cache render like a real, imperfect cache (pure; randomness from ``generator``).

    normal (B,T,3,H,W) unit camera-space normals (any values outside the mask), mask (B,T,1,H,W) in {0,1}.
    Per clip, each perturbation is applied with ``probability``: dilation of the mask by k in [1, max_dilation]
    pixels with normals extended from the nearest masked neighbours; a shift by up to ``max_shift`` pixels in x
    and y (same for all frames); Gaussian noise of std ``noise_std`` on the normals (re-normalised).
    Returns (normal * mask, mask) with unit normals on the new mask.
    """
    if normal.ndim != 5 or normal.shape[2] != 3 or mask.shape != (*normal.shape[:2], 1, *normal.shape[3:]):
        raise NeuralRenderError(f"perturb_cache_render: normal (B,T,3,H,W) and mask (B,T,1,H,W) expected, got "
                                f"{tuple(normal.shape)}, {tuple(mask.shape)}")
    dev = generator.device

    def draw() -> bool:
        return bool(torch.rand((), generator=generator, device=dev) < probability)

    outs_n, outs_m = [], []
    for b in range(normal.shape[0]):
        n, m = normal[b] * mask[b], mask[b].float()
        if max_dilation > 0 and draw():
            k = int(torch.randint(1, max_dilation + 1, (), generator=generator, device=dev))
            grown = F.max_pool2d(m, 2 * k + 1, stride=1, padding=k)
            spread = F.avg_pool2d(n, 2 * k + 1, stride=1, padding=k)
            n = torch.where(m > 0.5, n, spread)
            m = grown
        if max_shift > 0 and draw():
            dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator, device=dev))
            n, m = _shift(n, dy, dx), _shift(m, dy, dx)
        if noise_std > 0 and draw():
            noise = torch.randn(n.shape, generator=generator, device=dev).to(n) * noise_std
            n = n + noise
        n = F.normalize(n, dim=1, eps=1e-12)
        bad = n.norm(dim=1, keepdim=True) < 0.5  # dilated pixels without any masked neighbour value
        m = torch.where(bad, torch.zeros_like(m), m)
        outs_n.append(n * m)
        outs_m.append(m)
    return torch.stack(outs_n), torch.stack(outs_m)
