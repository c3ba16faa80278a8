"""``neural-render inverse INPUT --out DIR``: estimate G-buffers of a video with an inverse rendering pipeline.

INPUT: an MP4 (or other ffmpeg-readable) file, a folder of PNG/JPG frames, or a clip folder (meta.json; its rgb and
camera are used). DIR becomes a clip folder (io/clip.py: meta.json, frames/NNNNNN.exr with rgb + the predicted
passes + mask, rgb.mp4) plus ``previews/<pass>.mp4`` (browser-playable) and ``contact_sheet.png``; everything is
written in a temporary folder renamed into place at the end, so a failed or killed run leaves nothing half-written.
Depth is RELATIVE (1 = farthest visible surface of the window the model normalised; see pipelines/inverse.py).
meta.json ``extra["inverse"]`` records the model, its training step count (0 = untrained) and every setting.
The work is :func:`neural_render.autolabel.video.invert_video`.

Default model: ``data/models/inverse_tiny`` (the shipped tiny model). A model never trained is reported as such.
"""

from __future__ import annotations

from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW

MODEL_DEFAULT = f"the model's: {INVERSE_WINDOW} / {INVERSE_OVERLAP} for the toolkit's, 24 / 6 for DiffusionRenderer"

HELP = "estimate G-buffers (basecolor, normal, depth, roughness, metallic, mask) of a video with a diffusion model"
DEFAULT_MODEL = "models/inverse_tiny"   # inside the shipped data folder (neural_render.hub resolves it)


def add_model_arguments(parser) -> None:
    """Model and sampling options shared by ``inverse`` and ``autolabel``."""
    parser.add_argument("--model", default=None, help=f"pipeline folder (default: shipped data/{DEFAULT_MODEL})")
    parser.add_argument("--passes", nargs="+", default=None, metavar="PASS",
                        help="passes to predict (default: all the model predicts); the mask is always added")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--window", type=int, default=None,
                        help=f"frames per temporal window (default {MODEL_DEFAULT})")
    parser.add_argument("--overlap", type=int, default=None,
                        help="frames shared by neighbouring windows (default: the model's, see --window)")
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


def add_inverse_size_argument(parser) -> None:
    """``--size`` of the commands that run the inverse model as one step (relight, edit, insert)."""
    from neural_render.pipelines.frame_size import SIZE_HELP

    parser.add_argument("--size", default=None,
                        help=f"processing size of the inverse step: {SIZE_HELP} (default: the inverse model's native "
                             "size, else the input size); its G-buffers are resized back to the input size")


def check_settings(args) -> None:
    """The options of :func:`add_model_arguments` (NeuralRenderError for bad values)."""
    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.frame_size import parse_size_arg

    window, overlap = args.window, args.overlap  # None: the model's (checked once it is loaded)
    if (window is not None and window < 1) or (overlap is not None and not 0 <= overlap < (window or overlap + 1)):
        raise NeuralRenderError(f"need --window >= 1 and 0 <= --overlap < --window, got {window}, {overlap}")
    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    if not 1.0 <= args.fov <= 179.0:
        raise NeuralRenderError(f"--fov must be in [1, 179] degrees, got {args.fov}")
    parse_size_arg(args.size)


def settings_from_args(args):
    """The options of :func:`add_model_arguments` -> :class:`~neural_render.autolabel.video.InverseSettings`."""
    from neural_render.autolabel.video import InverseSettings
    from neural_render.pipelines.frame_size import parse_size_arg

    return InverseSettings(passes=args.passes, steps=args.steps, window=args.window, overlap=args.overlap,
                           size=parse_size_arg(args.size), seed=args.seed, fov=args.fov,
                           progress=not args.no_progress)


def report_inverse_size(inverse, proc, size=None) -> None:
    """Print the size the inverse step processed at (nothing when it did not run: G-buffers given)."""
    from neural_render.autolabel.video import size_text, warn_no_native_size

    if proc is None or inverse is None:
        return
    warn_no_native_size(inverse, size)
    print(f"inverse step processed at {size_text(proc, inverse)}")


def run(args) -> int:
    from neural_render.autolabel.video import invert_video

    check_settings(args)
    s = invert_video(args.input, args.out, settings_from_args(args), model=args.model, device=args.device,
                     overwrite=args.overwrite)
    print(f"{args.out}: {s['frames']} frames {s['size'][1]}x{s['size'][0]}, passes {', '.join(s['passes'])}, "
          f"{s['steps']} steps, {len(s['windows'])} window(s), processed at {s['processed_at']} in "
          f"{s['seconds']:.1f} s")
    return 0
