"""``neural-render edit VIDEO --mask MASK --set roughness=0.1 --set metallic=1 --set basecolor=#aa2211 --out out.mp4``.

Material editing: VIDEO (MP4, frame folder or clip folder) -> inverse renderer -> inside MASK the given passes are
set (soft masks blend) -> forward renderer under ``--envmap`` (default: the clip folder's own env map; a plain
video needs ``--envmap``) -> composited over the input outside the mask (``--no-keep-outside`` shows the full
re-render). MASK: an image (white = edit; used for every frame), or a video / folder of frames (one per frame), the
same size as VIDEO; ``--gbuffer CLIP`` gives precomputed G-buffers instead of running the inverse model (same
frames and size as VIDEO). ``--set``: basecolor=#rrggbb (sRGB hex) or r,g,b (linear in [0, 1]); roughness=x; metallic=x.
Writes out.mp4 and out.side_by_side.mp4 (input | edited) after every input was checked.
"""

from __future__ import annotations

HELP = "edit materials of a video inside a mask: inverse renderer -> set basecolor/roughness/metallic -> forward"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_relight_arguments

    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--mask", required=True, help="mask image, or mask video / frame folder (white = edit)")
    parser.add_argument("--set", action="append", default=[], metavar="PASS=VALUE", dest="edits",
                        help="basecolor=#rrggbb | basecolor=r,g,b | roughness=x | metallic=x (repeatable)")
    parser.add_argument("--envmap", default=None, help="env map to render under (default: the clip's own)")
    parser.add_argument("--rotate", default="0,0,0", help="yaw,pitch,roll in degrees")
    parser.add_argument("--no-keep-outside", action="store_true", help="do not composite the input outside the mask")
    add_relight_arguments(parser, "output .mp4 (X.side_by_side.mp4 is written beside it)")


def run(args) -> int:
    from pathlib import Path

    from neural_render.cli.forward import check_sampling
    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output
    from neural_render.pipelines.material_text import parse_edits

    check_sampling(args)
    edits = parse_edits(args.edits)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise NeuralRenderError("--out must be an .mp4 file", out)
    sbs = out.with_name(out.stem + ".side_by_side.mp4")
    kwargs = dict(command="edit", kind="file", overwrite=args.overwrite,
                  inputs=[args.video, args.mask, args.gbuffer, args.envmap, args.model, args.inverse_model])
    with claim_output(out, **kwargs), claim_output(sbs, **kwargs):
        return _edit(args, edits, out, sbs)


def _edit(args, edits, out, sbs) -> int:
    from pathlib import Path

    from neural_render import hub
    from neural_render.cli.inverse import report_inverse_size
    from neural_render.io import read_meta
    from neural_render.io.envmap_input import given_or_clip_env
    from neural_render.io.gbuffer_input import read_gbuffer
    from neural_render.io.video_input import read_input, read_mask
    from neural_render.io.video_output import side_by_side, write_mp4
    from neural_render.pipelines.frame_size import parse_size_arg
    from neural_render.pipelines.relight import check_mask

    is_clip = not args.envmap and (Path(args.video) / "meta.json").is_file()
    env = given_or_clip_env(args.envmap, args.rotate, args.video, read_meta(args.video) if is_clip else None,
                            "the input has no env map of its own; pass --envmap")
    video, camera, fps, _ = read_input(args.video, fov=args.fov)
    mask = read_mask(args.mask, video.shape[1])
    check_mask(mask, video, args.mask)
    gbuffer = read_gbuffer(args.gbuffer, video, args.video)
    pipe = hub.load_relight(args.inverse_model, args.model, args.device, need_inverse=gbuffer is None)
    size = parse_size_arg(args.size)
    result = pipe.edit(video, mask, edits, env, camera=camera, keep_outside=not args.no_keep_outside,
                       gbuffer=gbuffer, seed=args.seed, domain=args.domain, processing_size=size,
                       num_steps=args.steps)
    report_inverse_size(pipe.inverse, result.processing_size, size)
    write_mp4(out, result.video, fps, args.exposure, owner="edit")
    write_mp4(sbs, side_by_side([video, result.video]), fps, args.exposure, owner="edit")
    print(out)
    print(sbs)
    return 0
