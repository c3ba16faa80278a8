"""``neural-render shade CLIP_DIR --envmap X.hdr --out out.mp4``: the classical split-sum baseline.

Shades the clip's G-buffers (camera-space normals, basecolor, roughness, metallic; missing material passes
take the shader's documented defaults) under an HDR env map with the clip's per-frame camera poses.
``--rotate yaw,pitch,roll`` (degrees) turns the env map; without ``--envmap`` the clip's own env map is used.
The work is :func:`neural_render.pipelines.forward_clip.shade_clip`.
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


def run(args) -> int:
    from pathlib import Path

    from neural_render.io.envmap_input import parse_rotation
    from neural_render.io.output import claim_output
    from neural_render.pipelines.forward_clip import shade_clip

    parse_rotation(args.rotate)
    kind = "file" if Path(args.out).suffix.lower() == ".mp4" else "dir"
    with claim_output(args.out, command="shade", kind=kind, overwrite=args.overwrite, inputs=[args.clip, args.envmap]):
        print(shade_clip(args.clip, args.out, args.envmap, args.rotate, args.exposure))
    return 0
