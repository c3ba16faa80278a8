"""``neural-render relight VIDEO --envmap X.hdr [--envmap-sequence A.hdr B.hdr ...] --out OUT``: relight a video.

VIDEO (MP4, folder of frames or clip folder) is decomposed ONCE into G-buffers by the inverse renderer (default
``data/models/inverse_tiny``), then rendered under every given env map by the forward renderer (default
``data/models/forward_tiny``). ``--envmap`` and/or ``--envmap-sequence`` give the lights (shipped names or
.hdr/.exr files; several = several relit videos in one call); ``--rotate yaw,pitch,roll`` turns all of them.
A plain video has no camera poses: a static camera (identity pose, ``--fov``) is assumed; a clip folder's poses
are used.

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
    parser.add_argument("--out", required=True, help="X.mp4 (one env map) or an output folder")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal FOV (degrees) for videos without a camera")
    add_model_arguments(parser)


def side_by_side(videos) -> "torch.Tensor":
    """Concatenate (1, T, 3, H, W) videos left to right."""
    import torch

    return torch.cat([v.clamp(0.0, 1.0) for v in videos], dim=-1)


def load_pipelines(args):
    from neural_render.cli.forward import load_forward
    from neural_render.cli.inverse import load_model, resolve_device
    from neural_render.pipelines.relight import RelightPipeline

    return RelightPipeline(load_model(args.inverse_model, resolve_device(args.device)),
                           load_forward(args.model, args.device))


def run(args) -> int:
    import re
    from pathlib import Path

    from neural_render.cli.forward import check_sampling, load_env, write_mp4
    from neural_render.cli.inverse import read_input
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_dir

    check_sampling(args)
    names = ([args.envmap] if args.envmap else []) + list(args.envmap_sequence)
    if not names:
        raise NeuralRenderError("give --envmap and/or --envmap-sequence")
    out = Path(args.out)
    if out.suffix.lower() == ".mp4" and len(names) > 1:
        raise NeuralRenderError("several env maps need an output folder, not a single .mp4", out)
    envs = [load_env(name, args.rotate) for name in names]
    video, camera, fps, _ = read_input(args.video, fov=args.fov)
    pipe = load_pipelines(args)
    result = pipe.relight(video, envs, camera=camera, seed=args.seed, domain=args.domain)
    if out.suffix.lower() == ".mp4":
        write_mp4(out, result.videos[0], fps, args.exposure)
        sbs = out.with_name(out.stem + ".side_by_side.mp4")
        write_mp4(sbs, side_by_side([video, result.videos[0]]), fps, args.exposure)
        print(out)
        print(sbs)
        return 0
    with atomic_dir(out) as tmp:
        for k, (name, rgb) in enumerate(zip(names, result.videos)):
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)
            write_mp4(Path(tmp) / f"relit_{k}_{stem}.mp4", rgb, fps, args.exposure)
        write_mp4(Path(tmp) / "side_by_side.mp4", side_by_side([video, *result.videos]), fps, args.exposure)
    print(out)
    return 0
