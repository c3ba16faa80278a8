"""``neural-render relight VIDEO --envmap X.hdr [--envmap-sequence A.hdr B.hdr ...] --out OUT``: relight a video.

VIDEO (MP4, folder of frames or clip folder) is decomposed ONCE into G-buffers by the inverse renderer (default
``data/models/inverse_tiny``), then rendered under every given env map by the forward renderer (default
``data/models/forward_tiny``). ``--envmap`` and/or ``--envmap-sequence`` give the lights (shipped names or
.hdr/.exr files; several = several relit videos in one call); ``--rotate yaw,pitch,roll`` turns all of them.
A plain video has no camera poses: a static camera (identity pose, ``--fov``) is assumed; a clip folder's poses
are used. ``--gbuffer CLIP`` gives precomputed G-buffers (e.g. ``neural-render inverse`` output) instead of running
the inverse model; their frame count and size must match the video.

Outputs: ``--out X.mp4`` (one env map): X.mp4 (relit) and X.side_by_side.mp4 (input | relit);
``--out FOLDER``: FOLDER/relit_<k>_<env>.mp4 per env map and FOLDER/side_by_side.mp4 (input | every relit video),
written as one folder renamed into place. Every input (video, env maps, models) is read and checked before any
output is written.
"""

from __future__ import annotations

HELP = "relight a video: inverse renderer -> new env map(s) -> forward renderer; relit MP4(s) + side-by-side MP4"


def add_arguments(parser) -> None:
    from neural_render.cli.forward import add_model_arguments

    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--envmap", default=None, help="target env map (shipped name or .hdr/.exr)")
    parser.add_argument("--envmap-sequence", nargs="+", default=[], metavar="ENV",
                        help="more target env maps: one relit video each, sharing one inverse pass")
    parser.add_argument("--rotate", default="0,0,0", help="yaw,pitch,roll in degrees applied to every env map")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "X.mp4 (one env map; X.side_by_side.mp4 is written beside it) or an output folder")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--gbuffer", default=None,
                        help="clip folder with G-buffers of VIDEO (e.g. from `neural-render inverse`): skip the inverse")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal FOV (degrees) for videos without a camera")
    add_model_arguments(parser)
    from neural_render.cli.inverse import add_inverse_size_argument

    add_inverse_size_argument(parser)


def side_by_side(videos) -> "torch.Tensor":
    """Concatenate (1, T, 3, H, W) videos left to right."""
    import torch

    return torch.cat([v.clamp(0.0, 1.0) for v in videos], dim=-1)


def read_gbuffer(path: str | None, video, source: str | None = None):
    """G-buffer passes of a clip folder (None when ``path`` is None); must match the video's frames and size."""
    from neural_render.data.forward_data import FORWARD_PASSES
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_meta

    if path is None:
        return None
    meta = read_meta(path)
    passes = [p for p in (*FORWARD_PASSES, "mask") if p in meta.passes]
    if not passes:
        raise NeuralRenderError("clip folder holds no G-buffer passes", path)
    b, t, _, h, w = video.shape
    if (meta.num_frames, meta.height, meta.width) != (t, h, w):
        raise NeuralRenderError(f"G-buffer clip is {meta.num_frames} frames of {meta.width}x{meta.height} but the "
                                f"video {source or ''} is {t} frames of {w}x{h}", path)
    return read_clip(path, passes=passes, rgb=False).gbuffer


def load_pipelines(args, need_inverse: bool = True):
    from neural_render.cli.forward import load_forward
    from neural_render.cli.inverse import load_model, resolve_device
    from neural_render.pipelines.relight import RelightPipeline

    inverse = load_model(args.inverse_model, resolve_device(args.device)) if need_inverse else None
    return RelightPipeline(inverse, load_forward(args.model, args.device))


def run(args) -> int:
    from pathlib import Path

    from neural_render.cli.forward import check_sampling
    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output

    check_sampling(args)
    names = ([args.envmap] if args.envmap else []) + list(args.envmap_sequence)
    if not names:
        raise NeuralRenderError("give --envmap and/or --envmap-sequence")
    out = Path(args.out)
    if out.suffix.lower() == ".mp4" and len(names) > 1:
        raise NeuralRenderError("several env maps need an output folder, not a single .mp4", out)
    inputs = [args.video, args.gbuffer, *names, args.model, args.inverse_model]
    kwargs = dict(command="relight", overwrite=args.overwrite, inputs=inputs)
    if out.suffix.lower() != ".mp4":
        with claim_output(out, kind="dir", **kwargs):
            return _relight(args, names, out)
    sbs = out.with_name(out.stem + ".side_by_side.mp4")
    with claim_output(out, kind="file", **kwargs), claim_output(sbs, kind="file", **kwargs):
        return _relight(args, names, out, sbs)


def _relight(args, names, out, sbs=None) -> int:
    import re
    from pathlib import Path

    from neural_render.cli.forward import load_env, write_mp4
    from neural_render.cli.inverse import read_input
    from neural_render.io.atomic import atomic_dir
    from neural_render.io.output import write_folder_marker

    envs = [load_env(name, args.rotate) for name in names]
    video, camera, fps, _ = read_input(args.video, fov=args.fov)
    gbuffer = read_gbuffer(args.gbuffer, video, args.video)
    pipe = load_pipelines(args, need_inverse=gbuffer is None)
    from neural_render.cli.inverse import parse_size, report_inverse_size

    size = parse_size(args.size)
    result = pipe.relight(video, envs, camera=camera, gbuffer=gbuffer, seed=args.seed, domain=args.domain,
                          processing_size=size)
    report_inverse_size(pipe.inverse, result.processing_size, size)
    if sbs is not None:
        write_mp4(out, result.videos[0], fps, args.exposure, owner="relight")
        write_mp4(sbs, side_by_side([video, result.videos[0]]), fps, args.exposure, owner="relight")
        print(out)
        print(sbs)
        return 0
    with atomic_dir(out) as tmp:
        write_folder_marker(tmp, "relight")
        for k, (name, rgb) in enumerate(zip(names, result.videos)):
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)
            write_mp4(Path(tmp) / f"relit_{k}_{stem}.mp4", rgb, fps, args.exposure)
        write_mp4(Path(tmp) / "side_by_side.mp4", side_by_side([video, *result.videos]), fps, args.exposure)
    print(out)
    return 0
