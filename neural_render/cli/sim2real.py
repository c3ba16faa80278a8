"""``neural-render sim2real VIDEO --lora DIR --out out.mp4 [--strength s]``: rendered video -> realistic video.

VIDEO: an MP4 (or other ffmpeg-readable) file, a folder of PNG/JPG frames, or a clip folder (its rgb; for a
``synth --proxy`` clip the rendered side in ``rendered/``). ``--lora DIR``: either a sim2real model folder (a
pipeline folder with ``sim2real_config.json``, e.g. ``neural-render fit --export_dir`` of the sim2real task) or a
bare IC-LoRA folder (``ic_lora.json`` + peft files, :func:`neural_render.models.ic_lora.save_ic_lora`) applied to
the base pipeline given by ``--base`` (or named in its ``ic_lora.json`` info). A LoRA made for another backbone, a
video whose size is not a multiple of the model stride (without ``--size``), unreadable input -> exit 2.
``--strength`` scales the LoRA (0 = base model, 1 = as trained). Long videos run in overlapping windows blended in
latent space (``--window``/``--overlap`` in video frames). Output: ``.mp4`` (sRGB, browser-playable) or a clip
folder (linear EXR rgb + the input's camera), written atomically. The work is
:func:`neural_render.pipelines.sim2real_video.translate_video`.
"""

from __future__ import annotations

HELP = "translate a rendered video into a realistic one with the sim-to-real IC-LoRA (RealMaster)"


def add_arguments(parser) -> None:
    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--lora", required=True, help="sim2real model folder or IC-LoRA folder")
    parser.add_argument("--base", default=None, help="base pipeline folder for a bare IC-LoRA folder")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output .mp4 or clip folder")
    parser.add_argument("--strength", type=float, default=1.0, help="LoRA scale (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--window", type=int, default=None, help="video frames per window (default: the model's)")
    parser.add_argument("--overlap", type=int, default=None, help="video frames shared by windows (default: model's)")
    parser.add_argument("--size", default=None,
                        help="processing size: WxH or N (longer side), multiples of the model stride "
                             "(default: the input size)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output
    from neural_render.pipelines.frame_size import parse_size_arg

    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    size = parse_size_arg(args.size)
    kind = "file" if Path(args.out).suffix.lower() == ".mp4" else "dir"
    with claim_output(args.out, command="sim2real", kind=kind, overwrite=args.overwrite,
                      inputs=[args.video, args.lora, args.base]):
        return _sim2real(args, size)


def _sim2real(args, size) -> int:
    from neural_render.pipelines.sim2real_video import translate_video

    out = translate_video(args.video, args.out, args.lora, args.base, strength=args.strength, steps=args.steps,
                          window=args.window, overlap=args.overlap, size=size, seed=args.seed, fps=args.fps,
                          progress=not args.no_progress)
    ph, pw = out.processing_size
    print(f"{args.out}  ({out.frames.shape[1]} frames, {len(out.windows)} window(s), strength {args.strength}, "
          f"processed at {pw}x{ph})")
    return 0
