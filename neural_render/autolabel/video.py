"""One video -> estimated G-buffers in an output folder (what ``neural-render inverse`` does, and ``autolabel`` per
clip).

INPUT: a video file, a folder of PNG/JPG frames or a clip folder (io/video_input.py). The output folder
(io/gbuffer_output.py) is written in a temporary folder renamed into place at the end, so a failed or killed run
leaves nothing half-written. Depth is RELATIVE (1 = farthest visible surface of the window the model normalised;
see pipelines/inverse.py). meta.json ``extra["inverse"]`` records the model, its training step count
(0 = untrained) and every setting.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW

log = logging.getLogger(__name__)


@dataclass
class InverseSettings:
    """How the inverse pipeline runs on a video. passes: pass names (None: all the model predicts; the mask is
    always added); steps: denoising steps (None: the model's); window / overlap: frames per temporal window and
    frames shared by neighbours (None: the model's, :func:`model_windows`; :func:`resolve_settings` fills them);
    size: processing size, None (the model's native size, else the input size), N (longer side, pixels) or (h, w)
    (pipelines/frame_size.parse_size_arg); seed: sampling seed; fov: horizontal field of view in degrees for videos
    without a camera; progress: show a progress bar."""

    passes: list[str] | None = None
    steps: int | None = None
    window: int | None = None
    overlap: int | None = None
    size: int | tuple[int, int] | None = None
    seed: int = 0
    fov: float = 60.0
    progress: bool = True


def model_windows(pipe) -> tuple[int, int]:
    """(window, overlap) in video frames an inverse pipeline uses by default: its own ``window`` / ``overlap``
    (a DiffusionRenderer checkpoint: 24 / 6, the reference's), else the toolkit's (pipelines/defaults.py: 16 / 8)."""
    window = getattr(pipe, "window", None)
    overlap = getattr(pipe, "overlap", None)
    return int(window or INVERSE_WINDOW), int(INVERSE_OVERLAP if overlap is None else overlap)


def resolve_settings(settings: InverseSettings, pipe) -> InverseSettings:
    """``settings`` with window / overlap the model's where None (:func:`model_windows`); NeuralRenderError unless
    window >= 1 and 0 <= overlap < window."""
    import dataclasses

    from neural_render.errors import NeuralRenderError

    window, overlap = model_windows(pipe)
    window = window if settings.window is None else int(settings.window)
    overlap = overlap if settings.overlap is None else int(settings.overlap)
    if window < 1 or not 0 <= overlap < window:
        raise NeuralRenderError(f"need --window >= 1 and 0 <= --overlap < --window, got {window}, {overlap} (the "
                                f"model's defaults: {', '.join(map(str, model_windows(pipe)))})")
    return dataclasses.replace(settings, window=window, overlap=overlap)


def warn_no_native_size(pipe, size=None, model_path=None) -> None:
    """Log a warning when no size is given and the model records no native size (older folders: the input size
    is used, as before)."""
    if size is None and pipe.default_processing_size() is None:
        log.warning(f"{model_path or 'the inverse model'} records no native size (a folder from before native_size): "
                    "processing at the input size; --size N sets it")


def check_input_size(pipe, input_path, size=None, passes=None):
    """Before decoding ``input_path``: refuse an input whose run would exceed the memory budget (NeuralRenderError
    with a hint; pipelines/memory.py). Returns the planned processing (h, w), or None when the input's size is
    unknown (the reader then reports the input)."""
    from neural_render.io.video_probe import probe_input
    from neural_render.pipelines.memory import GBUFFER_CHANNELS, MemoryEstimate, check_memory
    from neural_render.types.gbuffer import PASS_CHANNELS

    probe = probe_input(input_path)
    if probe is None:
        return None
    channels = GBUFFER_CHANNELS if not passes else 1 + sum(PASS_CHANNELS.get(p, 0) for p in passes if p != "mask")
    proc = pipe.processing_shape(probe.height, probe.width, size)
    check_memory(MemoryEstimate(probe.frames, (probe.height, probe.width), proc, channels), input_path,
                 size_hint=lambda side: pipe.processing_shape(probe.height, probe.width, side))
    return proc


def size_text(proc, pipe=None) -> str:
    """(h, w) -> '64x48' (+ ' (the model's native size)' when that is what decided it), for every command's
    messages."""
    text = f"{int(proc[1])}x{int(proc[0])}"
    native = getattr(pipe, "native_size", None)
    if native is not None and pipe.processing_size is None and max(proc) == native:
        text += " (the model's native size)"
    return text


def model_info(pipe, model_path) -> dict:
    """What meta.json records about the model: folder, mode, passes, whether trained, training steps."""
    return {"model": str(model_path), "mode": pipe.mode, "model_passes": list(pipe.passes),
            "trained": pipe.is_trained, "global_step": int(pipe.info.get("global_step", 0) or 0)}


def label_video(pipe, input_path, out_dir, settings: InverseSettings, model_path=None, owner: str = "inverse") -> dict:
    """Run ``pipe`` on one input and write the output folder ``out_dir`` atomically (``owner``: the command,
    recorded in the folder's owner marker); returns a summary dict (frames, size [h, w], and the settings
    recorded in meta.json)."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io import video_input
    from neural_render.io.atomic import atomic_dir
    from neural_render.io.gbuffer_output import write_outputs
    from neural_render.io.output import write_folder_marker

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NeuralRenderError("output exists and is not a folder", out)
    s = resolve_settings(settings, pipe)
    check_input_size(pipe, input_path, s.size, s.passes)
    rgb, camera, fps, rgb_format, srgb8 = video_input.read_input(input_path, s.fov, with_srgb8=True)
    result = pipe(rgb, passes=s.passes, num_steps=s.steps, processing_size=s.size, window=s.window,
                  overlap=s.overlap, seed=s.seed, progress=s.progress)
    recorded = {"source": str(input_path), **model_info(pipe, model_path), "passes": list(result.gbuffer.passes),
                "steps": int(s.steps or pipe.default_steps()), "window": s.window, "overlap": s.overlap,
                "processing_size": list(result.processing_size), "native_size": pipe.native_size, "seed": s.seed,
                "windows": [list(w) for w in result.windows],
                "depth": "relative: 1 = farthest visible surface (scale unknown), 0 = background"}
    with atomic_dir(out) as tmp:
        write_folder_marker(tmp, owner)
        write_outputs(Path(tmp), rgb, result.gbuffer, camera, fps, rgb_format, recorded, srgb8)
    return {"frames": int(rgb.shape[1]), "size": [int(rgb.shape[3]), int(rgb.shape[4])], **recorded}


def invert_video(input_path: str | os.PathLike, out: str | os.PathLike, settings: InverseSettings,
                 model: str | os.PathLike | None = None, device: str = "auto", overwrite: bool = False) -> dict:
    """``neural-render inverse``: claim ``out`` (io/output.py: refused when it is not ours, unless ``overwrite``),
    load the model (hub spec: None = the shipped inverse_tiny, or e.g. a DiffusionRenderer inverse folder) on
    ``device``, label the video. Returns the summary
    of :func:`label_video` plus ``seconds`` (labelling time) and ``processed_at`` (text of the processing size)."""
    import time

    from neural_render import hub
    from neural_render.devices import resolve_device
    from neural_render.io.output import claim_output

    with claim_output(out, command="inverse", kind="dir", overwrite=overwrite, inputs=[input_path, model]):
        device = resolve_device(device)
        path = hub.resolve_model(model, "inverse")
        pipe = hub.load_inverse(path, device)
        if not pipe.is_trained:
            log.warning(f"{path} is an UNTRAINED model (0 training steps): its G-buffers are meaningless")
        warn_no_native_size(pipe, settings.size, path)
        start = time.perf_counter()
        summary = label_video(pipe, input_path, out, settings, path)
    seconds = time.perf_counter() - start
    return {**summary, "seconds": seconds, "processed_at": size_text(summary["processing_size"], pipe)}
