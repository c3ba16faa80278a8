"""``neural-render insert VIDEO --mesh obj.glb --material basecolor=...,roughness=...,metallic=... --at x,y,z
[--scale s] --out out.mp4``: insert a 3D object into a video with the 3D cache (pipelines/insert.py).

VIDEO is a video file, a folder of frames or a clip folder. A clip folder gives per-frame camera poses, intrinsics,
its env map (``--envmap`` overrides) and a depth scale (meta ``depth_scale``: scene units of relative depth 1); a
plain video gets a static camera at the origin looking along -Z (identity pose, ``--fov``), needs ``--envmap`` and
needs a depth scale so the object can be occluded by the scene. The scene's G-buffers are estimated
by the inverse renderer (``--gbuffers inverse``, default; ``--inverse-model``) or read from the clip folder
(``--gbuffers clip``: stored passes, e.g. an earlier ``neural-render inverse`` output or a synthetic clip).
Depth scale (scene units of relative depth 1), first that applies: ``--depth-scale``; the clip's stored passes'
scale (``--gbuffers clip``); for ESTIMATED (relative) depth, anchored where the object rests: the estimated depth
at the pixel of its ground contact (below its centre, at its lowest point) equals that point's true distance
(:func:`~neural_render.pipelines.insert.anchored_depth_scale`, as ``neural-render eval insert`` does); the clip
meta's ``depth_scale``; 10.
The object: ``--mesh`` (OBJ/GLB/glTF/PLY/STL/OFF; centred, largest extent 1 after loading) scaled to ``--scale``
scene units, turned by ``--object-rotate yaw,pitch,roll``, its centre at ``--at x,y,z`` (world units), with a constant
``--material`` (basecolor = one grey value, three linear RGB values or #rrggbb sRGB; roughness; metallic).

Forward model (``--model``): default the shipped ``data/models/forward_cache_tiny`` (forward model fine-tuned with
the cache injection); when it is not shipped, ``data/models/forward_tiny`` without injection (a note is printed).
``--no-inject`` renders without the cache, ``--strength`` scales the injection. ``--blend differential`` (default)
keeps the input video and adds the change the object causes (render with object - render without), ``full``
outputs the forward render. Every input is read and checked before a model runs; outputs are written atomically.
The work is :func:`neural_render.pipelines.insert_video.insert_into_video`.
"""

from __future__ import annotations

HELP = "insert a 3D object into a video: inverse render, composite its G-buffers, forward render with the 3D cache"


def add_arguments(parser) -> None:
    from neural_render.cli.forward import add_model_arguments

    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--mesh", required=True, help="mesh file of the object (OBJ/GLB/glTF/PLY/STL/OFF)")
    parser.add_argument("--material", default="basecolor=0.8,roughness=0.5,metallic=0",
                        help="basecolor=V|R,G,B|#rrggbb,roughness=V,metallic=V (linear, in [0, 1])")
    parser.add_argument("--at", required=True,
                        help="x,y,z world position of the object's centre (negative x: write --at=-1,0,2)")
    parser.add_argument("--scale", type=float, default=1.0, help="largest extent of the object in scene units")
    parser.add_argument("--object-rotate", default="0,0,0", help="object yaw,pitch,roll in degrees")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output .mp4")
    parser.add_argument("--side-by-side", action="store_true", help="also write OUT.side_by_side.mp4 (input | output)")
    parser.add_argument("--envmap", default=None, help="env map (shipped name or .hdr/.exr); default: the clip's own")
    parser.add_argument("--rotate", default="0,0,0", help="env map yaw,pitch,roll in degrees")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal FOV (degrees) for videos without a camera")
    parser.add_argument("--depth-scale", type=float, default=None,
                        help="scene units (metres) per unit of the scene's relative depth, i.e. how far away the "
                             "estimated scene is; it decides what hides the object. Default, first that applies: "
                             "the clip's stored passes (--gbuffers clip); the estimated depth anchored so the "
                             "object's ground contact point lies on the scene surface; the clip meta's "
                             "depth_scale; 10")
    parser.add_argument("--gbuffers", choices=("inverse", "clip"), default="inverse",
                        help="scene G-buffers from the inverse renderer (default) or the clip folder's passes")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--strength", type=float, default=None, help="cache injection strength (default: model's)")
    parser.add_argument("--received-from", choices=("support", "lifted"), default="support",
                        help="injections with received shadows: what shadows the object, only the plane it stands on "
                             "(default: robust to estimated depth) or the scene lifted from its G-buffer")
    parser.add_argument("--no-inject", action="store_true", help="render without the 3D cache injection")
    parser.add_argument("--blend", choices=("differential", "full"), default="differential",
                        help="differential (default): add the rendered change (object + its shadow) to the input "
                             "video; full: the forward render of the whole frame")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser, steps=1)
    from neural_render.cli.inverse import add_inverse_size_argument

    add_inverse_size_argument(parser)


def run(args) -> int:
    import contextlib
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise NeuralRenderError("--out must be an .mp4 file", out)
    targets = [out] + ([out.with_name(out.stem + ".side_by_side.mp4")] if args.side_by_side else [])
    with contextlib.ExitStack() as stack:
        for target in targets:
            stack.enter_context(claim_output(target, command="insert", kind="file", overwrite=args.overwrite,
                                             inputs=[args.video, args.mesh, args.envmap, args.model,
                                                     args.inverse_model]))
        return _insert(args)


def _insert(args) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from neural_render.cli.forward import check_sampling
    from neural_render.cli.inverse import report_inverse_size
    from neural_render.io.video_output import side_by_side, write_mp4
    from neural_render.pipelines.insert_video import InsertOptions, insert_into_video

    check_sampling(args)
    out = Path(args.out)
    r = insert_into_video(InsertOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(InsertOptions)}))
    report_inverse_size(r.inverse, r.inverse_size, r.size)
    write_mp4(out, r.result.rgb, r.fps, args.exposure, owner="insert")
    print(out)
    if args.side_by_side:
        sbs = out.with_name(out.stem + ".side_by_side.mp4")
        write_mp4(sbs, side_by_side([r.video, r.result.rgb]), r.fps, args.exposure, owner="insert")
        print(sbs)
    pixels = r.result.object_mask.flatten(2).sum(2)[0].to(torch.int64).tolist()
    print(f"object visible in {sum(p > 0 for p in pixels)}/{len(pixels)} frames ({min(pixels)}..{max(pixels)} px), "
          f"depth scale {r.result.depth_scale:g} ({r.how}), cache injection {'on' if r.inject else 'off'}, "
          f"blend {args.blend}")
    return 0
