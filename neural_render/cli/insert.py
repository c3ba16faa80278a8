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
"""

from __future__ import annotations

HELP = "insert a 3D object into a video: inverse render, composite its G-buffers, forward render with the 3D cache"
DEFAULT_CACHE_MODEL = "models/forward_cache_tiny"  # inside the shipped data folder
#: --scale above this many scene units (metres) is refused before any work (1e4: a 10 km object).
MAX_OBJECT_SCALE = 1e4
#: an object smaller than this many pixels across in every frame is refused (it could not be seen).
MIN_OBJECT_PIXELS = 0.5
#: an object over this many times the scene's (metric) depth extent is refused once the scene's depth is known.
MAX_SCENE_RATIO = 100.0


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
    add_model_arguments(parser)
    from neural_render.cli.inverse import add_inverse_size_argument

    add_inverse_size_argument(parser)


def _floats(text: str, count: int | None, what: str) -> list[float]:
    import math

    from neural_render.errors import NeuralRenderError

    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise NeuralRenderError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if (count is not None and len(values) != count) or not all(math.isfinite(v) for v in values):
        raise NeuralRenderError(f"{what} must be {count} finite comma-separated numbers, got {text!r}")
    return values


def parse_material(text: str):
    """'basecolor=0.8,0.2,0.1,roughness=0.3,metallic=0' (or basecolor=#rrggbb sRGB / one grey) -> Material."""
    from neural_render.errors import NeuralRenderError
    from neural_render.raster import Material

    fields: dict[str, list[str]] = {}
    key = None
    for token in (t.strip() for t in str(text).split(",")):
        if "=" in token:
            key, value = (s.strip() for s in token.split("=", 1))
            if key not in ("basecolor", "roughness", "metallic"):
                raise NeuralRenderError(f"--material: unknown key {key!r} (basecolor, roughness, metallic)")
            if key in fields:
                raise NeuralRenderError(f"--material: {key} given twice")
            fields[key] = [value]
        elif key is not None and token:
            fields[key].append(token)
        else:
            raise NeuralRenderError(f"--material: expected key=value, got {token!r} in {text!r}")
    values = {"basecolor": [0.8], "roughness": [0.5], "metallic": [0.0]}
    for name, raw in fields.items():
        if name == "basecolor" and len(raw) == 1 and raw[0].startswith("#"):
            values[name] = _hex_to_linear(raw[0])
            continue
        values[name] = _floats(",".join(raw), None, f"--material {name}")
    if len(values["basecolor"]) not in (1, 3) or len(values["roughness"]) != 1 or len(values["metallic"]) != 1:
        raise NeuralRenderError("--material: basecolor takes 1 or 3 values, roughness and metallic 1")
    return Material(values["basecolor"], values["roughness"][0], values["metallic"][0], name="inserted")


def _hex_to_linear(text: str) -> list[float]:
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.render.tonemap import srgb_to_linear

    digits = text.lstrip("#")
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise NeuralRenderError(f"--material basecolor: bad colour {text!r} (use #rrggbb)")
    srgb = torch.tensor([int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])
    return [float(v) for v in srgb_to_linear(srgb)]


def forward_model_dir(path: str | None):
    """(folder, note): --model, else the shipped cache model, else the shipped forward model (without injection)."""
    from neural_render.cli.forward import model_dir
    from neural_render.data_assets import data_dir

    if path is not None:
        return model_dir(path), None
    folder = data_dir() / DEFAULT_CACHE_MODEL
    if (folder / "model_index.json").is_file():
        return folder, None
    return model_dir(None), f"no shipped cache-injection model ({folder}); using the plain forward model"


def scene_gbuffers(args, video, meta):
    """(scene G-buffer with relative depth, depth scale or None) from the clip folder or the inverse renderer."""
    from neural_render.errors import NeuralRenderError

    if args.gbuffers == "clip":
        from neural_render.io import read_clip

        if meta is None:
            raise NeuralRenderError("--gbuffers clip needs a clip folder", args.video)
        if "depth" not in meta.passes:
            raise NeuralRenderError("the clip folder has no depth pass (needed to composite the object)", args.video)
        keep = [p for p in ("basecolor", "normal", "depth", "roughness", "metallic", "mask") if p in meta.passes]
        gbuffer = read_clip(args.video, passes=keep, rgb=False).gbuffer
        scale = meta.depth_scale or float(gbuffer.depth.max()) or 1.0
        return gbuffer.replace(depth=gbuffer.depth / scale), scale
    from neural_render.cli.inverse import load_model, resolve_device

    pipe = load_model(args.inverse_model, resolve_device(args.device))
    if not pipe.is_trained:
        import logging
        logging.getLogger(__name__).warning("the inverse model is UNTRAINED: its G-buffers are meaningless")
    from neural_render.cli.inverse import parse_size, report_inverse_size

    size = parse_size(args.size)
    result = pipe(video, seed=args.seed, progress=not args.no_progress, processing_size=size)
    report_inverse_size(pipe, result.processing_size, size)
    return result.gbuffer, None


def check_scale(scale: float) -> None:
    """--scale before any work: finite, > 0 and at most :data:`MAX_OBJECT_SCALE` scene units."""
    import math

    from neural_render.errors import NeuralRenderError

    if not (math.isfinite(scale) and 0 < scale <= MAX_OBJECT_SCALE):
        raise NeuralRenderError(f"--scale (the object's largest extent in scene units, metres) must be a finite number "
                                f"in (0, {MAX_OBJECT_SCALE:g}], got {scale:g}")


def check_object_footprint(scale: float, camera, at) -> None:
    """Refuse an object smaller than :data:`MIN_OBJECT_PIXELS` pixels in every frame (cheap: camera only)."""
    import torch

    from neural_render.errors import NeuralRenderError

    c2w = camera.camera_to_world[0].to(torch.float64)
    p = torch.as_tensor(at, dtype=torch.float64).reshape(3)
    z = -torch.einsum("tij,tj->ti", torch.linalg.inv(c2w[:, :3, :3]), p[None] - c2w[:, :3, 3])[:, 2]
    fx = float(camera.intrinsics[0, 0])
    pixels = scale * fx / z[z > 1e-6]
    if pixels.numel() and float(pixels.max()) < MIN_OBJECT_PIXELS:
        raise NeuralRenderError(f"--scale {scale:g} makes the object {float(pixels.max()):.2g} pixels across at its "
                                f"distance ({float(z[z > 1e-6].min()):.3g} scene units at the nearest): smaller than "
                                "a pixel; use a larger --scale or an --at closer to the camera")


def check_object_vs_scene(scale: float, scene, depth_scale: float | None, how: str) -> None:
    """Refuse an object over :data:`MAX_SCENE_RATIO` times the scene's depth extent (metric, after the depth scale)."""
    import math

    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.insert import DEFAULT_DEPTH_SCALE

    if scene.depth is None:
        return
    depth = scene.depth if scene.mask is None else scene.depth[scene.mask > 0.5]
    extent = float(depth.max()) * (depth_scale or DEFAULT_DEPTH_SCALE) if depth.numel() else 0.0
    if math.isfinite(extent) and extent > 0 and scale > MAX_SCENE_RATIO * extent:
        raise NeuralRenderError(f"--scale {scale:g} is over {MAX_SCENE_RATIO:g} times the scene's depth extent "
                                f"({extent:.3g} scene units, depth scale from {how}): the object would swallow the "
                                "scene; use a smaller --scale (or --depth-scale if the scene's scale is wrong)")


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
    import math
    from pathlib import Path

    import torch

    from neural_render.cli.forward import check_sampling, load_env, write_mp4
    from neural_render.cli.inverse import read_input
    from neural_render.cli.relight import side_by_side
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip_envmap, read_meta
    from neural_render.pipelines.insert import (
        CacheForwardPipeline,
        InsertedObject,
        check_in_front,
        insert_object,
    )
    from neural_render.synth.shapes import load_mesh_file

    check_sampling(args)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise NeuralRenderError("--out must be an .mp4 file", out)
    check_scale(args.scale)
    if args.depth_scale is not None and not (math.isfinite(args.depth_scale) and args.depth_scale > 0):
        raise NeuralRenderError(f"--depth-scale must be a finite number > 0, got {args.depth_scale:g}")
    if args.strength is not None and not args.strength >= 0:
        raise NeuralRenderError("--strength must be >= 0")
    material = parse_material(args.material)
    at = _floats(args.at, 3, "--at")
    rotation = _floats(args.object_rotate, 3, "--object-rotate")
    load_mesh_file(args.mesh)  # fail before any heavy work on a mesh that does not load
    video, camera, fps, _ = read_input(args.video, fov=args.fov)
    is_clip = (Path(args.video) / "meta.json").is_file()
    meta = read_meta(args.video) if is_clip else None
    check_in_front(camera, at, args.mesh)
    check_object_footprint(args.scale, camera, at)
    if args.envmap:
        env = load_env(args.envmap, args.rotate)
    else:
        from neural_render.cli.shade import parse_rotation

        env = read_clip_envmap(args.video, meta) if meta is not None else None
        if env is None:
            raise NeuralRenderError("no env map: a plain video (or a clip without one) needs --envmap", args.video)
        env = env.rotated(*parse_rotation(args.rotate))
    folder, note = forward_model_dir(args.model)
    from neural_render.cli.inverse import resolve_device

    forward = CacheForwardPipeline.from_pretrained(folder, device=resolve_device(args.device))
    inject = not args.no_inject
    if inject and forward.injection is None:
        if args.model is not None:
            raise NeuralRenderError("this forward model has no cache injection (cache_injection/); use --no-inject",
                                    folder)
        inject = False
    import logging
    log = logging.getLogger(__name__)
    if note:
        log.warning(note)
    if inject and forward.injection.is_zero:
        log.warning("the cache injection of this model is untrained (zero): it changes nothing")
    scene, clip_scale = scene_gbuffers(args, video, meta)
    obj = InsertedObject(str(args.mesh), material, tuple(at), float(args.scale), tuple(rotation))
    from neural_render.pipelines.insert import choose_depth_scale

    depth_scale, how = choose_depth_scale(args.depth_scale, clip_scale, scene, camera, obj, meta)
    check_object_vs_scene(args.scale, scene, depth_scale, how)
    result = insert_object(forward, video, camera, env, obj, scene, depth_scale=depth_scale, inject=inject,
                           strength=args.strength, blend=args.blend, seed=args.seed, num_steps=args.steps,
                           received_from=args.received_from,
                           window=args.window, overlap=args.overlap, domain=args.domain,
                           reassign_blocks=args.reassign_blocks, reassign_steps=args.reassign_steps,
                           progress=not args.no_progress)
    write_mp4(out, result.rgb, fps, args.exposure, owner="insert")
    print(out)
    if args.side_by_side:
        sbs = out.with_name(out.stem + ".side_by_side.mp4")
        write_mp4(sbs, side_by_side([video, result.rgb]), fps, args.exposure, owner="insert")
        print(sbs)
    pixels = result.object_mask.flatten(2).sum(2)[0].to(torch.int64).tolist()
    print(f"object visible in {sum(p > 0 for p in pixels)}/{len(pixels)} frames ({min(pixels)}..{max(pixels)} px), "
          f"depth scale {result.depth_scale:g} ({how}), cache injection {'on' if inject else 'off'}, "
          f"blend {args.blend}")
    return 0
