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
                        help="processing size: N (longer side) or HxW (default: the model's, else the input size)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--fov", type=float, default=60.0,
                        help="horizontal FOV in degrees for videos without a camera (default 60)")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu, cuda, cuda:1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser) -> None:
    parser.add_argument("input", help="video file, folder of frames, or clip folder")
    parser.add_argument("--out", required=True, help="output clip folder (replaced atomically)")
    add_model_arguments(parser)


def parse_size(text: str | None):
    """'N' -> int, 'HxW' -> (h, w), None -> None (NeuralRenderError otherwise)."""
    from neural_render.errors import NeuralRenderError

    if text is None:
        return None
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            if h > 0 and w > 0:
                return (h, w)
        elif int(text) > 0:
            return int(text)
    except ValueError:
        pass
    raise NeuralRenderError(f"--size must be N or HxW with positive integers, got {text!r}")


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


def read_input(path: str | os.PathLike, fov: float = 60.0):
    """Video file / frame folder / clip folder -> (rgb (1, T, 3, H, W) linear, Camera, fps, rgb_format)."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_video
    from neural_render.render.tonemap import srgb_to_linear
    from neural_render.types import Camera

    p = Path(path)
    if (p / "meta.json").is_file():
        clip = read_clip(p, passes=[])
        if clip.rgb is None:
            raise NeuralRenderError("clip folder has no rgb to invert", p)
        return clip.rgb, clip.camera, clip.meta.fps, "exr" if clip.meta.rgb_source == "exr" else "mp4"
    frames, fps = read_video(p)
    t, h, w, _ = frames.shape
    camera = Camera.from_fov(fov, w, h, torch.eye(4).repeat(1, t, 1, 1))
    rgb = srgb_to_linear(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)[None].contiguous()
    return rgb, camera, fps, "mp4"


def model_info(pipe, model_path) -> dict:
    return {"model": str(model_path), "mode": pipe.mode, "model_passes": list(pipe.passes),
            "trained": pipe.is_trained, "global_step": int(pipe.info.get("global_step", 0) or 0)}


def label_video(pipe, input_path, out_dir, args, model_path=None) -> dict:
    """Run ``pipe`` on one input and write the output folder atomically; returns a summary dict."""
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NeuralRenderError("output exists and is not a folder", out)
    rgb, camera, fps, rgb_format = read_input(input_path, args.fov)
    result = pipe(rgb, passes=args.passes, num_steps=args.steps, processing_size=parse_size(args.size),
                  window=args.window, overlap=args.overlap, seed=args.seed, progress=not args.no_progress)
    settings = {"source": str(input_path), **model_info(pipe, model_path), "passes": list(result.gbuffer.passes),
                "steps": int(args.steps or pipe.default_steps()), "window": args.window, "overlap": args.overlap,
                "processing_size": list(result.processing_size), "seed": args.seed,
                "windows": [list(w) for w in result.windows],
                "depth": "relative: 1 = farthest visible surface (scale unknown), 0 = background"}
    with atomic_dir(out) as tmp:
        write_outputs(Path(tmp), rgb, result.gbuffer, camera, fps, rgb_format, settings)
    return {"frames": int(rgb.shape[1]), "size": [int(rgb.shape[3]), int(rgb.shape[4])], **settings}


def write_outputs(folder: Path, rgb, gbuffer, camera, fps: float, rgb_format: str, settings: dict) -> None:
    """Clip folder + previews/<pass>.mp4 + contact_sheet.png into the (temporary, empty) ``folder``."""
    from neural_render.io import Clip, ClipMeta, write_clip, write_image, write_video
    from neural_render.viz.contact_sheet import gbuffer_contact_sheet, pass_to_display

    meta = ClipMeta.for_camera(camera, fps=float(fps), extra={"inverse": settings})
    stage = folder / ".clip"
    write_clip(stage, Clip(rgb=rgb, gbuffer=gbuffer, camera=camera, meta=meta), rgb_format=rgb_format)
    for child in stage.iterdir():
        os.replace(child, folder / child.name)
    stage.rmdir()
    mask = gbuffer.mask[0] if gbuffer.mask is not None else None
    for name, x in gbuffer.passes.items():
        write_video(folder / PREVIEW_DIR / f"{name}.mp4", pass_to_display(name, x[0], mask).numpy(), fps=float(fps))
    write_image(folder / CONTACT_SHEET, gbuffer_contact_sheet(gbuffer, rgb))


def run(args) -> int:
    import time

    check_settings(args)
    device = resolve_device(args.device)
    path = model_dir(args.model)
    pipe = load_model(path, device)
    if not pipe.is_trained:
        import logging
        logging.getLogger(__name__).warning(f"{path} is an UNTRAINED model (0 training steps): its G-buffers "
                                            "are meaningless")
    start = time.perf_counter()
    summary = label_video(pipe, args.input, args.out, args, path)
    print(f"{args.out}: {summary['frames']} frames {summary['size'][1]}x{summary['size'][0]}, passes "
          f"{', '.join(summary['passes'])}, {summary['steps']} steps, {len(summary['windows'])} window(s), "
          f"processed at {summary['processing_size'][1]}x{summary['processing_size'][0]} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0
