"""``neural-render contact-sheet CLIP_DIR``: a labelled PNG of a clip's rgb and G-buffer passes.

The default output is ``<CLIP_DIR>.contact_sheet.png`` BESIDE the clip folder: a command never writes into its input.
"""

from __future__ import annotations

HELP = "write a contact sheet PNG (rgb | basecolor | normal | depth | roughness | metallic) of a clip folder"


def add_arguments(parser) -> None:
    parser.add_argument("clip", help="clip folder (meta.json + frames/)")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output PNG (default: CLIP_DIR.contact_sheet.png beside the clip folder)", required=False)
    parser.add_argument("--rows", type=int, default=6, help="frames shown, spread evenly (default 6)")
    parser.add_argument("--exposure", type=float, default=0.0, help="exposure of rgb in stops")


def run(args) -> int:
    import os
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, write_image
    from neural_render.io.output import claim_output
    from neural_render.types import GBuffer
    from neural_render.viz.contact_sheet import gbuffer_contact_sheet

    if args.rows < 1:
        raise NeuralRenderError("--rows must be >= 1")
    clip_dir = Path(os.path.abspath(args.clip))
    if not args.out and not clip_dir.name:
        raise NeuralRenderError("give --out: the clip folder has no name to derive one from", args.clip)
    out = Path(args.out) if args.out else clip_dir.with_name(clip_dir.name + ".contact_sheet.png")
    if out.suffix.lower() != ".png":
        raise NeuralRenderError("--out must be a .png file", out)
    with claim_output(out, command="contact-sheet", kind="file", overwrite=args.overwrite, inputs=[args.clip]):
        clip = read_clip(args.clip)
        gbuffer = clip.gbuffer if clip.gbuffer is not None else GBuffer()
        sheet = gbuffer_contact_sheet(gbuffer, clip.rgb, max_rows=args.rows, stops=args.exposure)
        write_image(out, sheet, owner="contact-sheet")
    print(out)
    return 0
