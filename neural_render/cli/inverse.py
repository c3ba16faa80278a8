"""``neural-render inverse INPUT --out DIR``: estimate G-buffers of a video with an inverse rendering pipeline.

INPUT: an MP4 (or other ffmpeg-readable) file, a folder of PNG/JPG frames, or a clip folder (meta.json; its rgb and
camera are used). DIR becomes a clip folder (io/clip.py: meta.json, frames/NNNNNN.exr with rgb + the predicted
passes + mask, rgb.mp4) plus ``previews/<pass>.mp4`` (browser-playable) and ``contact_sheet.png``; everything is
written in a temporary folder renamed into place at the end, so a failed or killed run leaves nothing half-written.
Depth is RELATIVE (1 = farthest visible surface of the window the model normalised; see pipelines/inverse.py).
meta.json ``extra["inverse"]`` records the model, its training step count (0 = untrained) and every setting.

Default model: ``data/models/inverse_tiny`` (the shipped tiny model). A model never trained is reported as such.
"""

from __future__ import annotations

import os
from pathlib import Path

from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW

HELP = "estimate G-buffers (basecolor, normal, depth, roughness, metallic, mask) of a video with a diffusion model"
DEFAULT_MODEL = "models/inverse_tiny"   # inside the shipped data folder
PREVIEW_DIR = "previews"
CONTACT_SHEET = "contact_sheet.png"


def add_model_arguments(parser) -> None:
    """Model and sampling options shared by ``inverse`` and ``autolabel``."""
    parser.add_argument("--model", default=None, help=f"pipeline folder (default: shipped data/{DEFAULT_MODEL})")
    parser.add_argument("--passes", nargs="+", default=None, metavar="PASS",
                        help="passes to predict (default: all the model predicts); the mask is always added")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--window", type=int, default=INVERSE_WINDOW,
                        help=f"frames per temporal window (default {INVERSE_WINDOW})")
    parser.add_argument("--overlap", type=int, default=INVERSE_OVERLAP,
                        help=f"frames shared by neighbouring windows (default {INVERSE_OVERLAP})")
    parser.add_argument("--size", default=None,
                        help="processing size: WxH or N (longer side) (default: the model's native size, else the "
                             "input size); outputs are resized back to the input size")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--fov", type=float, default=60.0,
                        help="horizontal FOV in degrees for videos without a camera (default 60)")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu, cuda, cuda:1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser) -> None:
    parser.add_argument("input", help="video file, folder of frames, or clip folder")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output clip folder")
    add_model_arguments(parser)


def parse_size(text: str | None):
    """--size: 'WxH' -> (h, w), 'N' -> N (longer side), None -> None (the one parser of every command,
    :func:`neural_render.pipelines.frame_size.parse_size_arg`)."""
    from neural_render.pipelines.frame_size import parse_size_arg

    return parse_size_arg(text)


def warn_no_native_size(pipe, size=None, model_path=None) -> None:
    """Log a warning when no --size is given and the model records no native size (older folders: the input size
    is used, as before)."""
    import logging

    if size is None and pipe.default_processing_size() is None:
        logging.getLogger(__name__).warning(f"{model_path or 'the inverse model'} records no native size (a folder "
                                            "from before native_size): processing at the input size; --size N sets it")


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


def add_inverse_size_argument(parser) -> None:
    """``--size`` of the commands that run the inverse model as one step (relight, edit, insert)."""
    from neural_render.pipelines.frame_size import SIZE_HELP

    parser.add_argument("--size", default=None,
                        help=f"processing size of the inverse step: {SIZE_HELP} (default: the inverse model's native "
                             "size, else the input size); its G-buffers are resized back to the input size")


def report_inverse_size(inverse, proc, size=None) -> None:
    """Print the size the inverse step processed at (nothing when it did not run: G-buffers given)."""
    if proc is None or inverse is None:
        return
    warn_no_native_size(inverse, size)
    print(f"inverse step processed at {size_text(proc, inverse)}")


def size_text(proc, pipe=None) -> str:
    """'64x48' (+ ' (the model's native size)' when that is what decided it) for the messages of every command."""
    text = f"{int(proc[1])}x{int(proc[0])}"
    native = getattr(pipe, "native_size", None)
    if native is not None and pipe.processing_size is None and max(proc) == native:
        text += " (the model's native size)"
    return text


def check_settings(args) -> None:
    from neural_render.errors import NeuralRenderError

    if args.window < 1 or not 0 <= args.overlap < args.window:
        raise NeuralRenderError(f"need --window >= 1 and 0 <= --overlap < --window, got {args.window}, {args.overlap}")
    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    if not 1.0 <= args.fov <= 179.0:
        raise NeuralRenderError(f"--fov must be in [1, 179] degrees, got {args.fov}")
    parse_size(args.size)


def model_dir(path: str | None) -> Path:
    """The model folder: ``path`` or the shipped default (NeuralRenderError when the default is not shipped)."""
    from neural_render.data_assets import data_dir
    from neural_render.errors import NeuralRenderError

    if path is not None:
        return Path(path)
    folder = data_dir() / DEFAULT_MODEL
    if not folder.is_dir():
        raise NeuralRenderError("no shipped inverse model here; pass --model DIR (a folder written by "
                                "InverseTask.export / `neural-render fit --export_dir`)", folder)
    return folder


def resolve_device(name: str):
    import torch

    from neural_render.errors import NeuralRenderError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise NeuralRenderError(f"bad --device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuralRenderError(f"--device {name}: CUDA is not available")
    return device


def load_model(path: str | None, device=None):
    """Load an :class:`InverseRenderingPipeline` (NeuralRenderError for a missing or invalid folder)."""
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    return InverseRenderingPipeline.from_pretrained(model_dir(path), device=device)


def read_input(path: str | os.PathLike, fov: float = 60.0, with_srgb8: bool = False):
    """Video file / frame folder / clip folder -> (rgb (1, T, 3, H, W) linear, Camera, fps, rgb_format), plus the
    decoded uint8 sRGB frames (T, H, W, 3) (None for a clip folder) when ``with_srgb8``."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_video
    from neural_render.types import Camera

    p = Path(path)
    if (p / "meta.json").is_file():
        clip = read_clip(p, passes=[])
        if clip.rgb is None:
            raise NeuralRenderError("clip folder has no rgb to invert", p)
        out = clip.rgb, clip.camera, clip.meta.fps, "exr" if clip.meta.rgb_source == "exr" else "mp4"
        return (*out, None) if with_srgb8 else out
    frames, fps = read_video(p)
    t, h, w, _ = frames.shape
    camera = Camera.from_fov(fov, w, h, torch.eye(4).repeat(1, t, 1, 1))
    out = srgb8_to_linear(frames), camera, fps, "mp4"
    return (*out, frames) if with_srgb8 else out


def srgb8_to_linear(frames) -> "torch.Tensor":
    """uint8 sRGB (T, H, W, 3) numpy -> linear (1, T, 3, H, W) float32 through a 256-entry table of
    :func:`srgb_to_linear` (the values of the elementwise formula; a few frames at a time, so no full-size float
    temporaries)."""
    import torch

    from neural_render.render.tonemap import srgb_to_linear

    t, h, w, _ = frames.shape
    table = srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0)
    rgb = torch.empty((1, t, 3, h, w), dtype=torch.float32)
    step = max(1, (1 << 24) // max(1, h * w * 3))
    for a in range(0, t, step):
        rgb[0, a:a + step] = table[torch.from_numpy(frames[a:a + step]).to(torch.int32)].permute(0, 3, 1, 2)
    return rgb


def model_info(pipe, model_path) -> dict:
    return {"model": str(model_path), "mode": pipe.mode, "model_passes": list(pipe.passes),
            "trained": pipe.is_trained, "global_step": int(pipe.info.get("global_step", 0) or 0)}


def label_video(pipe, input_path, out_dir, args, model_path=None, owner: str = "inverse") -> dict:
    """Run ``pipe`` on one input and write the output folder atomically (``owner``: the command, recorded in
    the folder's owner marker); returns a summary dict."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NeuralRenderError("output exists and is not a folder", out)
    size = parse_size(args.size)
    check_input_size(pipe, input_path, size, args.passes)
    rgb, camera, fps, rgb_format, srgb8 = read_input(input_path, args.fov, with_srgb8=True)
    result = pipe(rgb, passes=args.passes, num_steps=args.steps, processing_size=size,
                  window=args.window, overlap=args.overlap, seed=args.seed, progress=not args.no_progress)
    settings = {"source": str(input_path), **model_info(pipe, model_path), "passes": list(result.gbuffer.passes),
                "steps": int(args.steps or pipe.default_steps()), "window": args.window, "overlap": args.overlap,
                "processing_size": list(result.processing_size), "native_size": pipe.native_size, "seed": args.seed,
                "windows": [list(w) for w in result.windows],
                "depth": "relative: 1 = farthest visible surface (scale unknown), 0 = background"}
    with atomic_dir(out) as tmp:
        from neural_render.io.output import write_folder_marker

        write_folder_marker(tmp, owner)
        write_outputs(Path(tmp), rgb, result.gbuffer, camera, fps, rgb_format, settings, srgb8)
    return {"frames": int(rgb.shape[1]), "size": [int(rgb.shape[3]), int(rgb.shape[4])], **settings}


def write_fast_png(path: Path, image) -> None:
    """uint8 (H, W, 3) -> PNG at zlib level 1 (lossless; ~3x faster than the default level 6 for a contact sheet of
    512-pixel tiles, file ~30% larger), atomically."""
    from PIL import Image

    from neural_render.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)


#: frame EXRs of the output clip: uncompressed (lossless). Outputs upsampled to the input size are smooth floats
#: that neither RLE nor zip shrink much (measured on 512x512 bilinear upsamples: rle = none in size at 2x the time,
#: zip -6% at 11x), and the time goes into every run
OUTPUT_EXR_COMPRESSION = "none"
#: x264 preset of the browser previews (io/video.write_video)
PREVIEW_PRESET = "veryfast"


def write_outputs(folder: Path, rgb, gbuffer, camera, fps: float, rgb_format: str, settings: dict,
                  srgb8=None) -> None:
    """Clip folder + previews/<pass>.mp4 + contact_sheet.png into the (temporary, empty) ``folder``.

    Each pass is converted for display once (its preview and its contact-sheet column); the previews are encoded by
    ffmpeg on worker threads while the frame EXRs are written."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from neural_render.io import Clip, ClipMeta, write_clip, write_video
    from neural_render.io.exr import exr_compression
    from neural_render.viz.contact_sheet import COLUMN_ORDER, make_contact_sheet, pass_to_display

    meta = ClipMeta.for_camera(camera, fps=float(fps), extra={"inverse": settings})
    mask = gbuffer.mask[0] if gbuffer.mask is not None else None
    shown = {name: pass_to_display(name, x[0], mask) for name, x in gbuffer.passes.items()}
    (folder / PREVIEW_DIR).mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(write_video, folder / PREVIEW_DIR / f"{name}.mp4", y.numpy(), fps=float(fps),
                            preset=PREVIEW_PRESET) for name, y in shown.items()]
        stage = folder / ".clip"
        with exr_compression(OUTPUT_EXR_COMPRESSION):
            write_clip(stage, Clip(rgb=rgb, gbuffer=gbuffer, camera=camera, meta=meta), rgb_format=rgb_format,
                       srgb8=srgb8)
        for child in stage.iterdir():
            os.replace(child, folder / child.name)
        stage.rmdir()
        t = int(rgb.shape[1])  # the rows of viz.contact_sheet.gbuffer_contact_sheet: up to 6 frames spread evenly
        rows = np.unique(np.linspace(0, t - 1, num=min(t, 6)).round().astype(int))
        columns = {"rgb": pass_to_display("rgb", rgb[0, rows])}
        columns.update({name: shown[name][rows] for name in COLUMN_ORDER[1:] if name in shown})
        write_fast_png(folder / CONTACT_SHEET, make_contact_sheet(columns, max_rows=len(rows)))
        for job in jobs:
            job.result()


def run(args) -> int:
    import time

    from neural_render.io.output import claim_output

    check_settings(args)
    with claim_output(args.out, command="inverse", kind="dir", overwrite=args.overwrite, inputs=[args.input, args.model]):
        device = resolve_device(args.device)
        path = model_dir(args.model)
        pipe = load_model(path, device)
        if not pipe.is_trained:
            import logging
            logging.getLogger(__name__).warning(f"{path} is an UNTRAINED model (0 training steps): its G-buffers "
                                                "are meaningless")
        warn_no_native_size(pipe, parse_size(args.size), path)
        start = time.perf_counter()
        summary = label_video(pipe, args.input, args.out, args, path)
    print(f"{args.out}: {summary['frames']} frames {summary['size'][1]}x{summary['size'][0]}, passes "
          f"{', '.join(summary['passes'])}, {summary['steps']} steps, {len(summary['windows'])} window(s), "
          f"processed at {size_text(summary['processing_size'], pipe)} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0
