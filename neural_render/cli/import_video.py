"""``neural-render import VIDEO --out CLIP_DIR``: a video (MP4 or a folder of frames) as a clip folder.

Real videos carry no poses: the clip gets identity camera-to-world for every frame (a static camera) and
pinhole intrinsics from ``--fov``; later stages (inverse rendering) only need the frames. The RGB is kept
exactly (lossless rgb.mp4, ``rgb_source = "mp4"``). The work is :func:`neural_render.io.video_import.import_video`.
"""

from __future__ import annotations

HELP = "turn a video (MP4 or a folder of PNG/JPG frames) into a clip folder (meta.json + lossless rgb.mp4)"


def add_arguments(parser) -> None:
    parser.add_argument("video", help="MP4 file or a folder of PNG/JPG frames")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "clip folder to write")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal field of view in degrees (default 60)")
    parser.add_argument("--fps", type=float, default=None, help="override the frame rate")
    parser.add_argument("--max-frames", type=int, default=None, help="keep only the first N frames")


def run(args) -> int:
    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output

    if not 1.0 <= args.fov <= 179.0:
        raise NeuralRenderError(f"--fov must be in [1, 179] degrees, got {args.fov}")
    if args.max_frames is not None and args.max_frames < 1:
        raise NeuralRenderError(f"--max-frames must be >= 1, got {args.max_frames}")
    with claim_output(args.out, command="import", kind="dir", overwrite=args.overwrite, inputs=[args.video]):
        return _import(args)


def _import(args) -> int:
    from neural_render.io.video_import import import_video

    meta = import_video(args.video, args.out, fov=args.fov, fps=args.fps, max_frames=args.max_frames)
    print(f"{args.out}: {meta.num_frames} frames, {meta.width}x{meta.height}, {meta.fps:g} fps")
    return 0
