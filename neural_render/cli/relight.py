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
    from neural_render.cli.common_args import add_relight_arguments

    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--envmap", default=None, help="target env map (shipped name or .hdr/.exr)")
    parser.add_argument("--envmap-sequence", nargs="+", default=[], metavar="ENV",
                        help="more target env maps: one relit video each, sharing one inverse pass")
    parser.add_argument("--rotate", default="0,0,0", help="yaw,pitch,roll in degrees applied to every env map")
    add_relight_arguments(parser, "X.mp4 (one env map; X.side_by_side.mp4 is written beside it) or an output folder")


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
    from neural_render import hub
    from neural_render.cli.inverse import report_inverse_size
    from neural_render.io.envmap_input import load_env
    from neural_render.io.gbuffer_input import read_gbuffer
    from neural_render.io.video_input import read_input
    from neural_render.io.video_output import side_by_side, write_mp4, write_relit_folder
    from neural_render.pipelines.frame_size import parse_size_arg

    envs = [load_env(name, args.rotate) for name in names]
    video, camera, fps, _ = read_input(args.video, fov=args.fov)
    gbuffer = read_gbuffer(args.gbuffer, video, args.video)
    pipe = hub.load_relight(args.inverse_model, args.model, args.device, need_inverse=gbuffer is None)
    size = parse_size_arg(args.size)
    result = pipe.relight(video, envs, camera=camera, gbuffer=gbuffer, seed=args.seed, domain=args.domain,
                          processing_size=size, num_steps=args.steps)
    report_inverse_size(pipe.inverse, result.processing_size, size)
    if sbs is not None:
        write_mp4(out, result.videos[0], fps, args.exposure, owner="relight")
        write_mp4(sbs, side_by_side([video, result.videos[0]]), fps, args.exposure, owner="relight")
        print(out)
        print(sbs)
        return 0
    write_relit_folder(out, names, video, result.videos, fps, args.exposure, owner="relight")
    print(out)
    return 0
