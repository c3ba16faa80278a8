"""``neural-render contact-sheet CLIP_DIR``: a labelled PNG of a clip's rgb and G-buffer passes."""

from __future__ import annotations

HELP = "write a contact sheet PNG (rgb | basecolor | normal | depth | roughness | metallic) of a clip folder"


def add_arguments(parser) -> None:
    parser.add_argument("clip", help="clip folder (meta.json + frames/)")
    parser.add_argument("--out", help="output PNG (default: CLIP/contact_sheet.png)")
    parser.add_argument("--rows", type=int, default=6, help="frames shown, spread evenly (default 6)")
    parser.add_argument("--exposure", type=float, default=0.0, help="exposure of rgb in stops")


def run(args) -> int:
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, write_image
    from neural_render.types import GBuffer
    from neural_render.viz.contact_sheet import gbuffer_contact_sheet

    if args.rows < 1:
        raise NeuralRenderError("--rows must be >= 1")
    clip = read_clip(args.clip)
    out = Path(args.out) if args.out else Path(args.clip) / "contact_sheet.png"
    gbuffer = clip.gbuffer if clip.gbuffer is not None else GBuffer()
    sheet = gbuffer_contact_sheet(gbuffer, clip.rgb, max_rows=args.rows, stops=args.exposure)
    write_image(out, sheet)
    print(out)
    return 0
