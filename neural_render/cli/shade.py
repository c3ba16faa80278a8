"""``neural-render shade CLIP_DIR --envmap X.hdr --out out.mp4``: the classical split-sum baseline.

Shades the clip's G-buffers (camera-space normals, basecolor, roughness, metallic; missing material passes
take the shader's documented defaults) under an HDR env map with the clip's per-frame camera poses.
``--rotate yaw,pitch,roll`` (degrees) turns the env map; without ``--envmap`` the clip's own env map is used.
"""

from __future__ import annotations

HELP = "render a clip's G-buffers under an env map with the classical split-sum shader (baseline) to MP4/EXR"


def add_arguments(parser) -> None:
    parser.add_argument("clip", help="clip folder with at least a normal pass")
    parser.add_argument("--envmap", help="HDR env map (.hdr/.exr) or shipped name; default: the clip's own")
    parser.add_argument("--rotate", default="0,0,0", help="yaw,pitch,roll in degrees (default 0,0,0)")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output .mp4 (sRGB preview) or a clip folder (linear EXR)")
    parser.add_argument("--exposure", type=float, default=0.0, help="exposure in stops for the MP4")


def parse_rotation(text: str) -> tuple[float, float, float]:
    """'yaw,pitch,roll' in degrees -> floats (finite)."""
    import math

    from neural_render.errors import NeuralRenderError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise NeuralRenderError(f"rotation must be yaw,pitch,roll in degrees, got {text!r}")
    return values  # type: ignore[return-value]


def run(args) -> int:
    from pathlib import Path

    from neural_render.io.output import claim_output

    yaw, pitch, roll = parse_rotation(args.rotate)
    kind = "file" if Path(args.out).suffix.lower() == ".mp4" else "dir"
    with claim_output(args.out, command="shade", kind=kind, overwrite=args.overwrite, inputs=[args.clip, args.envmap]):
        return _shade(args, yaw, pitch, roll)


def _shade(args, yaw, pitch, roll) -> int:
    from pathlib import Path

    from neural_render.data_assets import envmap_path
    from neural_render.errors import NeuralRenderError
    from neural_render.io import Clip, load_envmap, read_clip, read_clip_envmap, write_clip, write_video
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.render.tonemap import display

    clip = read_clip(args.clip, rgb=False)
    if clip.gbuffer.normal is None:
        raise NeuralRenderError("clip has no normal pass to shade", args.clip)
    env = load_envmap(envmap_path(args.envmap)) if args.envmap else read_clip_envmap(args.clip, clip.meta)
    if env is None:
        raise NeuralRenderError("clip names no env map; pass --envmap", args.clip)
    rgb = shade(clip.gbuffer, clip.camera, prepare_ibl(env.rotated(yaw, pitch, roll)))
    out = Path(args.out)
    if out.suffix.lower() == ".mp4":
        write_video(out, display(rgb[0], args.exposure).permute(0, 2, 3, 1).numpy(), fps=clip.meta.fps,
                    owner="shade")
    else:
        write_clip(out, Clip(rgb=rgb, gbuffer=clip.gbuffer, camera=clip.camera, meta=clip.meta), owner="shade")
    print(out)
    return 0
