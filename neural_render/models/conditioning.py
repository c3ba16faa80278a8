"""Conditioning of the forward (G-buffer -> RGB) renderer, shared by the training task and the inference pipelines.

Forward inputs of a batch (:func:`prepare_forward_inputs`, a dict; B clips, T frames, H x W pixels):

* ``gbuffer``       GBuffer with the five FORWARD_PASSES (basecolor, normal, depth, roughness, metallic), each
                    (B, T, C, H, W); a missing pass is zeros
* ``present``       (B, 5) float presence flags (1 = given, 0 = missing) in FORWARD_PASSES order
* ``depth_scale``   (B,) per-clip depth normaliser (:func:`neural_render.types.depth_scale_of`, 1 without depth)
* ``env``           {"ldr", "log", "dir"} each (B, T, 3, H, W): the camera-space env encodings of every frame
                    (render/envmap.py ``env_encodings`` with the clip's poses and the env map's rotation), computed
                    at the video size; zeros when no env map; ``env_present`` (B,)
* ``prior``         (B, T, 3, H, W) linear radiance of the classical split-sum shader (render/shade.py) on the GIVEN
                    passes under the env (needs normal and env; otherwise zeros); ``prior_present`` (B,)

:func:`forward_condition` turns them into the backbone condition, channel-concatenated at latent resolution
(C = codec latent channels)::

    [basecolor C | normal C | depth C | roughness C | metallic C | 5 presence channels | env ldr C | log C | dir C
     | prior C | prior presence 1]                                   (the prior part only with ``with_prior``)

Each pass is packed with :func:`neural_render.types.pack_pass` to [-1, 1] and encoded; a missing pass's latents are
ZEROS and its presence channel 0. Env encodings (in [0, 1], dir in [-1, 1]) are mapped to [-1, 1] and encoded.
RGB (target and prior) uses :func:`display_pack`: display sRGB of clamp(x, 0, 1) mapped to [-1, 1] (values above 1,
e.g. the sun, are clipped: the model renders display-referred video); :func:`display_unpack` inverts it.

The prior is computed with the env's rotation moved onto the camera (shading with sky R and camera c2w equals
shading with the unrotated sky and camera R^T c2w), so one prefiltered env (:func:`cached_ibl`) serves every
rotation and frame.

Users: :class:`neural_render.tasks.forward.ForwardTask` (training), the forward datasets
(:mod:`neural_render.data.forward_data`, which also apply the per-buffer dropout of training), the forward and
cache-injection pipelines (:mod:`neural_render.pipelines.forward`, :mod:`neural_render.pipelines.insert`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.types import Camera, EnvMap, GBuffer
from neural_render.types.gbuffer import PASS_CHANNELS, PREDICTED_PASSES, depth_scale_of, pack_pass

FORWARD_PASSES = tuple(PREDICTED_PASSES)
ENV_KEYS = ("ldr", "log", "dir")


# ------------------------------------------------------------------------------------------------ packing
def display_pack(rgb: Tensor) -> Tensor:
    """Linear radiance (..., 3, H, W) -> display sRGB of clamp(x, 0, 1) in [-1, 1]."""
    from neural_render.render.tonemap import linear_to_srgb
    return linear_to_srgb(rgb.clamp(0.0, 1.0)) * 2.0 - 1.0


def display_unpack(y: Tensor) -> Tensor:
    """Inverse of :func:`display_pack`: [-1, 1] display values -> linear radiance in [0, 1]."""
    from neural_render.render.tonemap import srgb_to_linear
    return srgb_to_linear((y.clamp(-1.0, 1.0) + 1.0) * 0.5)


def forward_cond_channels(latent_channels: int, with_prior: bool) -> int:
    """Condition channels of the forward task for a codec with ``latent_channels`` C: 8C + 5 (+ C + 1 with prior)."""
    c = int(latent_channels)
    return 8 * c + len(FORWARD_PASSES) + (c + 1 if with_prior else 0)


# --------------------------------------------------------------------------------------------- inputs
_IBL_CACHE: dict = {}


def cached_ibl(image: Tensor, key: str | None = None):
    """prepare_ibl of an UNROTATED env image (3, h, w), memoised (up to 32) by ``key`` (e.g. the env file path;
    default: a SHA-1 of the image's bytes)."""
    import hashlib

    from neural_render.render.shade import prepare_ibl
    if key is None:
        data = image.detach().to("cpu", torch.float32).contiguous().numpy()
        key = f"sha1:{tuple(data.shape)}:{hashlib.sha1(data.tobytes()).hexdigest()}"
    if key in _IBL_CACHE:
        return _IBL_CACHE[key]
    ibl = prepare_ibl(EnvMap(image))
    if len(_IBL_CACHE) >= 32:
        _IBL_CACHE.clear()
    _IBL_CACHE[key] = ibl
    return ibl


def shade_prior(gbuffer: GBuffer, camera: Camera, env: EnvMap, ibl=None) -> Tensor:
    """Split-sum render (B, T, 3, H, W) of the given passes under ``env`` (rotation moved onto the camera, see module
    doc); ``ibl`` = :func:`cached_ibl` of ``env.image`` (computed when None). Needs the normal pass."""
    from neural_render.render.shade import shade
    ibl = cached_ibl(env.image) if ibl is None else ibl
    turn = torch.eye(4, dtype=camera.camera_to_world.dtype)
    turn[:3, :3] = env.rotation.to(turn.dtype).t()
    turned = Camera(camera.intrinsics, turn @ camera.camera_to_world, camera.width, camera.height)
    passes = {k: v for k, v in gbuffer.passes.items() if k != "mask"}
    return shade(GBuffer(**passes), turned, ibl)


def prepare_forward_inputs(gbuffer: GBuffer, camera: Camera, env: EnvMap | None, with_prior: bool = True,
                           ibl=None, depth_scale: Tensor | float | None = None) -> dict:
    """Forward inputs (module doc) from any subset of passes (B, T, C, H, W), a Camera (B clips, T frames, H x W) and an
    env map (one for the batch, rotation included) or None. ``ibl``: :func:`cached_ibl` of ``env.image`` (optional).
    depth_scale: (B,) or float; default :func:`depth_scale_of` of the given depth. Raises NeuralRenderError on size
    mismatches."""
    passes = {k: v for k, v in gbuffer.passes.items() if k in FORWARD_PASSES}
    if not passes:
        raise NeuralRenderError(f"forward rendering needs at least one of the passes {list(FORWARD_PASSES)}")
    b, t, h, w = gbuffer.shape
    if (camera.intrinsics.shape[0], camera.num_frames, camera.height, camera.width) != (b, t, h, w):
        raise NeuralRenderError(f"camera (B={camera.intrinsics.shape[0]}, T={camera.num_frames}, {camera.height}x"
                                f"{camera.width}) does not match the G-buffer (B={b}, T={t}, {h}x{w})")
    full = {}
    for name in FORWARD_PASSES:
        x = passes.get(name)
        if x is not None and tuple(x.shape) != (b, t, PASS_CHANNELS[name], h, w):
            expected = (b, t, PASS_CHANNELS[name], h, w)
            raise NeuralRenderError(f"pass {name!r} has shape {tuple(x.shape)}, expected {expected}")
        full[name] = x.float() if x is not None else torch.zeros(b, t, PASS_CHANNELS[name], h, w)
    present = torch.tensor([[float(n in passes) for n in FORWARD_PASSES]]).expand(b, -1).clone()
    if depth_scale is None:
        depth_scale = depth_scale_of(full["depth"]) if "depth" in passes else torch.ones(b)
    depth_scale = torch.as_tensor(depth_scale, dtype=torch.float32).reshape(-1).expand(b).clone()
    inputs = {"gbuffer": GBuffer(**full), "present": present, "depth_scale": depth_scale,
              "env_present": torch.full((b,), float(env is not None)),
              "prior_present": torch.full((b,), float(with_prior and env is not None and "normal" in passes))}
    if env is not None:
        from neural_render.render.envmap import env_encodings
        inputs["env"] = env_encodings(env, camera.camera_to_world, h, w)
    else:
        inputs["env"] = {k: torch.zeros(b, t, 3, h, w) for k in ENV_KEYS}
    if with_prior:
        inputs["prior"] = (shade_prior(GBuffer(**passes), camera, env, ibl) if inputs["prior_present"][0] > 0
                           else torch.zeros(b, t, 3, h, w))
    return inputs


def forward_condition(encode, inputs: dict, with_prior: bool, prior_filter_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """(cond (B, T', Cc, h, w), prior latents (B, T', C, h, w)) from forward inputs; ``encode``: video (B, T, 3, H, W)
    in [-1, 1] -> latents (B, T', C, h, w). Channel layout in the module doc; prior latents are zeros where absent.
    prior_filter_sigma: pixels of the :func:`~neural_render.render.pixel_filter.pixel_filter` applied to the
    split-sum prior (its G-buffer is point-sampled, the path-traced target integrates each pixel); 0 = none."""
    gb, present = inputs["gbuffer"], inputs["present"].float()
    latents, masks = [], []
    for i, name in enumerate(FORWARD_PASSES):
        z = encode(pack_pass(name, getattr(gb, name), inputs["depth_scale"] if name == "depth" else None))
        keep = present[:, i].to(z).view(-1, 1, 1, 1, 1)
        latents.append(z * keep)
        masks.append(keep.expand(z.shape[0], z.shape[1], 1, z.shape[3], z.shape[4]))
    env_keep = inputs["env_present"].float().to(latents[0]).view(-1, 1, 1, 1, 1)
    envs = []
    for key in ENV_KEYS:
        x = inputs["env"][key]
        envs.append(encode(x if key == "dir" else x * 2.0 - 1.0) * env_keep)
    parts = latents + masks + envs
    prior = torch.zeros_like(latents[0])
    if with_prior:
        keep = inputs["prior_present"].float().to(prior).view(-1, 1, 1, 1, 1)
        shaded = inputs["prior"]
        if prior_filter_sigma:
            from neural_render.render.pixel_filter import pixel_filter
            shaded = pixel_filter(shaded, prior_filter_sigma)
        prior = encode(display_pack(shaded)) * keep
        parts += [prior, keep.expand_as(masks[0])]
    return torch.cat(parts, dim=2), prior
