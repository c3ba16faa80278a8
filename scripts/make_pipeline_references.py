#!/usr/bin/env python
"""Reference outputs of the shipped models (data/models/*) through the inference pipelines, for regression tests.

    python scripts/make_pipeline_references.py [--out tests/fixtures/pipeline_references.safetensors]

Input (stored in the file, so the test needs no video decoding): the first 4 frames of the shipped demo clip
``data/clips/demo_lebombo`` (128x96, rgb.mp4) area-downsampled 4x to 32x24, its cameras (intrinsics / 4) and its env
map (``data/envmaps/lebombo.hdr`` + the clip's rotation). Outputs (float32, CPU), all with fixed seeds:

* ``inverse.<pass>``   inverse_tiny: G-buffer (1, 4, C, 24, 32) incl. the mask, window 2 / overlap 1 video frames
  (two blended windows), generator seeded with 0 (the joint model: the same noise as ``seed=0``)
* ``forward.rgb``      forward_tiny: render of the inverse G-buffer above under the clip's env (one window)
* ``forward.windowed`` the same render with window 2 / overlap 1 (frames; the shipped codec has no temporal
  compression, so latent and video frames coincide)
* ``cache.rgb``        forward_cache_tiny: the same G-buffer with a synthetic cache (a disc of the G-buffer's normals,
  a shadow map beside it, the split-sum prior as its light) injected, window 2 / overlap 1
* ``relight.rgb``      inverse_tiny + forward_tiny relight of the video under another env (``blender_studio.hdr``,
  yaw 90), seed 0

:func:`reference_inputs` builds the inputs, :func:`reference_outputs` runs the pipelines; the test
(tests/pipelines/test_shipped_outputs.py) imports both from this file, so the references and the check run the same
code. The file must run against the tree before and after the issue #25 refactor (only APIs present in both: the
pipelines' ``from_pretrained``, the inverse ``__call__``, ``render`` and ``relight``; ``shade_prior`` is looked up
where each tree has it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "pipeline_references.safetensors"
CLIP = "clips/demo_lebombo"
FRAMES = 4
DOWNSAMPLE = 4
RELIGHT_ENV = ("blender_studio.hdr", 90.0)


def reference_inputs(data: Path) -> dict[str, torch.Tensor]:
    """video (1, 4, 3, 24, 32) linear, intrinsics (1, 4), camera_to_world (1, 4, 4, 4), env_rotation (3, 3)."""
    from neural_render.io.clip import read_clip, read_meta

    clip_dir = data / CLIP
    meta = read_meta(clip_dir)
    clip = read_clip(clip_dir, frames=slice(0, FRAMES), passes=[])
    b, t, c, h, w = clip.rgb.shape
    video = torch.nn.functional.avg_pool2d(clip.rgb.reshape(b * t, c, h, w).float(), DOWNSAMPLE)
    video = video.reshape(b, t, c, h // DOWNSAMPLE, w // DOWNSAMPLE).contiguous()
    return {"video": video, "intrinsics": (clip.camera.intrinsics.float() / DOWNSAMPLE).contiguous(),
            "camera_to_world": clip.camera.camera_to_world.float().contiguous(),
            "env_rotation": torch.tensor(meta.envmap["rotation_matrix"], dtype=torch.float32)}


def _shade_prior():
    try:  # after issue #25: the forward conditioning lives in models/
        from neural_render.models.conditioning import shade_prior
    except ImportError:  # before: in the forward dataset module
        from neural_render.data.forward_data import shade_prior
    return shade_prior


def synthetic_cache(gbuffer, camera, env) -> tuple[torch.Tensor, ...]:
    """(normal (1,T,3,H,W), mask (1,T,1,H,W), shadow (1,T,1,H,W), light (1,T,3,H,W)): a disc of radius H/4 at the
    image centre carrying the G-buffer's normals, a soft shadow of 0.6 below-left of it, the split-sum prior."""
    b, t, h, w = gbuffer.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    disc = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (h / 4) ** 2).float()
    mask = disc.view(1, 1, 1, h, w).expand(b, t, 1, h, w).contiguous()
    dist = ((yy - h * 0.7) ** 2 + (xx - w * 0.35) ** 2).sqrt()
    shadow = (0.6 * (1.0 - dist / (h / 3)).clamp(0.0, 1.0) * (1.0 - disc)).view(1, 1, 1, h, w).expand(b, t, 1, h, w)
    light = _shade_prior()(gbuffer, camera, env)
    return gbuffer.normal * mask, mask, shadow.contiguous(), light


def reference_outputs(data: Path, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run the shipped models on ``inputs`` (:func:`reference_inputs`); see the module docstring for the keys."""
    from neural_render.io.hdr import load_envmap
    from neural_render.pipelines.forward import ForwardPipeline
    from neural_render.pipelines.insert import CacheForwardPipeline
    from neural_render.pipelines.inverse import InverseRenderingPipeline
    from neural_render.pipelines.relight import RelightPipeline
    from neural_render.types import Camera, EnvMap

    models = data / "models"
    video = inputs["video"]
    h, w = video.shape[-2:]
    camera = Camera(inputs["intrinsics"], inputs["camera_to_world"], int(w), int(h))
    sky = load_envmap(data / "envmaps" / "lebombo.hdr")
    env = EnvMap(sky.image, inputs["env_rotation"], sky.name)
    other = load_envmap(data / "envmaps" / RELIGHT_ENV[0]).rotated(yaw=RELIGHT_ENV[1])
    out: dict[str, torch.Tensor] = {}

    inverse = InverseRenderingPipeline.from_pretrained(models / "inverse_tiny")
    estimate = inverse(video, window=2, overlap=1, generator=torch.Generator().manual_seed(0), progress=False)
    for name, x in estimate.gbuffer.passes.items():
        out[f"inverse.{name}"] = x
    gbuffer = estimate.gbuffer

    forward = ForwardPipeline.from_pretrained(models / "forward_tiny")
    out["forward.rgb"] = forward.render(gbuffer, camera, env, generator=torch.Generator().manual_seed(0)).rgb
    out["forward.windowed"] = forward.render(gbuffer, camera, env, window=2, overlap=1,
                                             generator=torch.Generator().manual_seed(0)).rgb

    cache_forward = CacheForwardPipeline.from_pretrained(models / "forward_cache_tiny")
    cache = synthetic_cache(gbuffer, camera, env)
    out["cache.rgb"] = cache_forward.render(gbuffer, camera, env, cache=cache, window=2, overlap=1,
                                            generator=torch.Generator().manual_seed(0)).rgb

    relight = RelightPipeline(inverse, forward)
    out["relight.rgb"] = relight.relight(video, [other], camera=camera, seed=0).videos[0]
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    from neural_render.data_assets import data_dir

    torch.set_num_threads(1)
    data = data_dir()
    inputs = reference_inputs(data)
    outputs = reference_outputs(data, inputs)
    tensors = {f"input.{k}": v for k, v in inputs.items()} | outputs
    import neural_render

    source = Path(neural_render.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    meta = {"made_by": "scripts/make_pipeline_references.py", "source_commit": commit.strip(),
            "torch": torch.__version__, "settings": json.dumps({"clip": CLIP, "frames": FRAMES,
                                                                "downsample": DOWNSAMPLE, "relight_env": RELIGHT_ENV})}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata=meta)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB, {len(tensors)} tensors) from {source} at {meta['source_commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
