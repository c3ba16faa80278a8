"""Forward rendering (relighting) with a DiffusionRenderer checkpoint, in this toolkit's layout.

    pipe = load_for_command("diffusion_renderer-forward-svd", "forward")   # pipelines/diffusion_renderer.py
    out = pipe(gbuffer, camera, env.rotated(yaw=90, pitch=10))  # out.rgb (B, T, 3, H, W) linear in [0, 1]

Call signature and output as :class:`~neural_render.pipelines.forward.ForwardPipeline` (what ``forward``,
``relight`` and ``edit`` use): ``gbuffer`` with the five passes (B, T, C, H, W) in the toolkit's units (the mask
is ignored), ``camera`` with per-frame poses (B, T), and an HDR ``env`` (:class:`EnvMap`; yaw / pitch / roll are its
rotation). The lighting condition is projected per frame in pure torch (:mod:`.diffusion_renderer_env`) at the
reference's 512x512 for a 512-px processing size (scaled with it otherwise, ``env_resolution`` overrides); when
every frame has the same camera rotation it is encoded once and shared. Any length (24-frame windows, 6 shared,
blended at every Euler step), any aspect ratio (:func:`~.diffusion_renderer_values.processing_shape`), outputs
resized back to the input size and decoded to linear radiance (display-referred, in [0, 1]).

``domain``: "real" (default) runs the folder's "real" LoRA at its scale (0.25 unless loaded otherwise), "synthetic"
turns it off (the reference recommends scale 0 for synthetic objects); folders without a LoRA ignore it.
DiffusionRenderer needs every pass and an env map: a missing pass or ``env=None`` is an error (the toolkit's own
forward model accepts subsets). Realiz3D block reassignment does not exist here (``reassign_*`` must be 0).
Sampling: 20 Euler steps, classifier-free guidance 1.2 (zero G-buffer latents and zero env tokens unconditional).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.models.diffusion_renderer.lora import set_lora_scale
from neural_render.pipelines.diffusion_renderer_command import DiffusionRendererCommandPipeline
from neural_render.pipelines.diffusion_renderer_env import env_encodings, shared_pose
from neural_render.pipelines.diffusion_renderer_inverse import DEFAULT_OVERLAP, as_output_type, as_tuple
from neural_render.pipelines.diffusion_renderer_values import (
    env_shape,
    pass_to_model,
    processing_shape,
    rgb_from_model,
)
from neural_render.pipelines.forward import ForwardOutput
from neural_render.types import Camera, EnvMap, GBuffer
from neural_render.types.gbuffer import depth_scale_of

DOMAINS = ("real", "synthetic")


class DiffusionRendererForwardPipeline(DiffusionRendererCommandPipeline):
    """G-buffers + camera + env map -> linear RGB video with a DiffusionRenderer forward checkpoint (module doc).
    ``renderer``: a :class:`~neural_render.pipelines.diffusion_renderer.DiffusionRendererPipeline` of a forward
    folder."""

    KIND = "forward"

    def __init__(self, renderer, window: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 num_steps: int | None = None, info: dict | None = None, processing_size=None):
        super().__init__()
        self._setup(renderer, window, overlap, num_steps, info, processing_size)
        self.lora_scale = float(renderer.settings.lora_scale)
        self.forward_config = {"window": self.window, "overlap": self.overlap, "info": self.info}

    spatial_step = DiffusionRendererCommandPipeline.stride

    def processing_shape(self, height: int, width: int, processing_size=None) -> tuple[int, int]:
        """(h, w) the G-buffers run at: None = :attr:`processing_size`, whose None is the shorter side
        ``native_size``; N = longer side; (h, w)."""
        size = processing_size if processing_size is not None else self.processing_size
        return processing_shape(height, width, self.stride, self.native_size, size)

    def env_shape(self, proc: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the env encodings for a processing size: the reference's env resolution at its 512-px frames,
        scaled with the shorter side otherwise (multiples of the VAE factor)."""
        return env_shape(proc, self.native_size, self.renderer.settings.env_resolution,
                         int(self.renderer.vae_scale_factor))

    def render(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, *args, **kwargs):
        """Alias of :meth:`__call__` (the toolkit's forward pipelines keep this earlier name)."""
        return self(gbuffer, camera, env, *args, **kwargs)

    def _inputs(self, gbuffer, camera, env) -> None:
        if not isinstance(gbuffer, GBuffer) or not isinstance(camera, Camera):
            raise NeuralRenderError("the forward DiffusionRenderer needs a GBuffer and a Camera")
        missing = [p for p in self.renderer.settings.gbuffers if gbuffer.passes.get(p) is None]
        if missing:
            raise NeuralRenderError(f"the DiffusionRenderer forward model needs every pass; missing {missing}")
        if not isinstance(env, EnvMap):
            raise NeuralRenderError("the DiffusionRenderer forward model needs an env map (EnvMap), got "
                                    f"{type(env).__name__}")
        b, t = gbuffer.shape[:2]
        if tuple(camera.camera_to_world.shape[:2]) != (b, t):
            raise NeuralRenderError(f"camera has {tuple(camera.camera_to_world.shape[:2])} clips x frames, the "
                                    f"G-buffer {(b, t)}")

    @torch.no_grad()
    def __call__(self, gbuffer: GBuffer, camera: Camera, env: EnvMap | None, num_steps: int | None = None,
                 generator: torch.Generator | None = None, domain: str = "real", reassign_blocks: int = 0,
                 reassign_steps: int = 0, window: int | None = None, overlap: int | None = None,
                 depth_scale: Tensor | float | None = None, progress: bool = False, seed: int | None = None,
                 output_type: str = "pt", callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), return_dict: bool = True,
                 processing_size=None, guidance_scale: float | None = None,
                 env_resolution: tuple[int, int] | None = None, decode_chunk_size: int | None = None):
        """Render (B, T, 3, H, W) linear RGB (module doc). num_steps: Euler steps (None: 20); generator or seed
        (default 0); domain: "real" | "synthetic" (the LoRA on / off); window / overlap: frames (default 24 / 6);
        depth_scale: (B,) or float the depth is divided by (default: the clip's farthest valid depth);
        processing_size: None | N (longer side) | (h, w); guidance_scale: default 1.2; env_resolution: (h, w) of
        the env encodings; decode_chunk_size: frames the VAE decodes (and encodes) at once (default 8).
        Returns :class:`~neural_render.pipelines.forward.ForwardOutput` (``prior`` None)."""
        if callback_on_step_end is not None:
            raise NeuralRenderError("callback_on_step_end is not supported by the DiffusionRenderer pipelines")
        if reassign_blocks or reassign_steps:
            raise NeuralRenderError("a DiffusionRenderer model has no Realiz3D domain shifters (reassign_* must be 0)")
        if domain not in DOMAINS:
            raise NeuralRenderError(f"domain must be one of {DOMAINS}, got {domain!r}")
        as_output_type(None, output_type)
        self._inputs(gbuffer, camera, env)
        b, t, h, w = gbuffer.shape
        steps = int(num_steps or self.default_steps())
        window = int(window or self.window)
        overlap = self.overlap if overlap is None else int(overlap)
        if steps < 1 or window < 1 or not 0 <= overlap < window:
            raise NeuralRenderError(f"need steps >= 1, window >= 1 and 0 <= overlap < window; got {steps}, {window}, "
                                    f"{overlap}")
        r = self.renderer
        device, proc = r.device, self.processing_shape(h, w, processing_size)
        scale = depth_scale_of(gbuffer.depth, gbuffer.mask) if depth_scale is None else depth_scale
        images = {name: pass_to_model(name, gbuffer.passes[name].to(device), _on(scale, device), *proc)
                  for name in r.settings.gbuffers}
        poses = camera.camera_to_world
        poses = poses[:, :1] if shared_pose(poses) else poses
        eh, ew = env_resolution or self.env_shape(proc)
        sky = EnvMap(env.image.to(device), env.rotation.to(device), env.name)
        chunk = int(decode_chunk_size or r.settings.decode_chunk_size)
        cond, tokens = r.encode_forward(images, env_encodings(sky, poses.to(device), int(eh), int(ew)), chunk)
        gen = generator if generator is not None else torch.Generator().manual_seed(int(seed or 0))
        changed = set_lora_scale(r.unet, self.lora_scale if domain == "real" else 0.0)
        try:
            z = r.denoise(cond, tokens, None, steps, guidance_scale, gen, None, window, overlap, progress)
        finally:
            if changed:
                set_lora_scale(r.unet, self.lora_scale)
        rgb = rgb_from_model(r.decode(z, chunk).cpu(), h, w)
        out = ForwardOutput(as_output_type(rgb, output_type), as_output_type(z.float().cpu(), output_type), None)
        return out if return_dict else as_tuple(out)


def _on(scale, device):
    return scale.to(device) if torch.is_tensor(scale) else scale
