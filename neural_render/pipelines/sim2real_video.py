"""Translate a rendered video into a realistic one with a sim2real pipeline (what ``neural-render sim2real`` does).

VIDEO: a video file, a folder of PNG/JPG frames, or a clip folder (its rgb; for a ``synth --proxy`` clip the
rendered side in ``rendered/``). The model: a sim2real model folder or a bare IC-LoRA folder + base
(:func:`neural_render.hub.load_sim2real`). Output: ``.mp4`` (sRGB) or a clip folder (linear EXR rgb + the input's
camera), written atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def read_rendered_video(path: str | os.PathLike):
    """Video file / frame folder / clip folder -> (rgb (1, T, 3, H, W) linear float32, Camera or None, fps)."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_video
    from neural_render.render.tonemap import srgb_to_linear

    p = Path(path)
    if p.is_dir() and (p / "meta.json").is_file():
        source = p / "rendered" if (p / "rendered" / "meta.json").is_file() else p
        clip = read_clip(source, passes=[])
        if clip.rgb is None:
            raise NeuralRenderError("clip folder has no rgb to translate", source)
        return clip.rgb, clip.camera, clip.meta.fps
    frames, fps = read_video(p)
    if frames.shape[0] < 1:
        raise NeuralRenderError("video has no frames", p)
    rgb = srgb_to_linear(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)[None].contiguous()
    return rgb, None, fps


def processing_hw(size, rgb, stride: int):
    """A parsed --size (pipelines/frame_size.parse_size_arg): N (longer side) -> (h, w) for the video ``rgb``
    (..., H, W), in multiples of ``stride``; (h, w) and None unchanged."""
    if not isinstance(size, int):
        return size
    from neural_render.pipelines.frame_size import processing_shape

    return processing_shape(int(rgb.shape[-2]), int(rgb.shape[-1]), stride, size)


def translate_video(video: str | os.PathLike, out: str | os.PathLike, lora: str | os.PathLike,
                    base: str | os.PathLike | None = None, strength: float = 1.0, steps: int | None = None,
                    window: int | None = None, overlap: int | None = None, size=None, seed: int = 0,
                    fps: float | None = None, progress: bool = True, owner: str = "sim2real"):
    """Translate ``video`` into ``out`` and return the pipeline's output (frames, windows, processing_size).

    strength: LoRA scale (0 = base model); steps / window / overlap: None = the model's (window and overlap in
    video frames); size: parsed --size (None: the input size); fps: output frame rate (None: the input's)."""
    import torch

    from neural_render import hub
    from neural_render.io.video_output import write_video_or_clip

    pipe = hub.load_sim2real(lora, base)
    if not pipe.is_trained:
        log.warning("sim2real: this model was never trained (global_step 0); output is meaningless")
    rgb, camera, input_fps = read_rendered_video(video)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    result = pipe(rgb, strength=strength, num_steps=steps, window=window, overlap=overlap,
                  processing_size=processing_hw(size, rgb, pipe.stride), seed=seed, progress=progress)
    write_video_or_clip(out, result.frames, camera, float(fps or input_fps), owner=owner)
    return result
