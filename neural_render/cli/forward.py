"""``neural-render forward CLIP_DIR --envmap X.hdr [--rotate yaw,pitch,roll] --out out.mp4``: neural forward rendering.

Renders a clip's G-buffers (any subset of basecolor, normal, depth, roughness, metallic; ``--passes`` picks a
subset) under an HDR env map with the clip's per-frame camera poses, using a forward pipeline (default: the shipped
``data/models/forward_tiny``). ``--rotate`` turns the env map (degrees; yaw about +Y, pitch, roll); without
``--envmap`` the clip's own env map is used. ``--out``: ``.mp4`` (display sRGB) or a clip folder (linear EXR rgb +
the G-buffers used). Long clips are rendered in overlapping windows blended in latent space (``--window`` /
``--overlap`` in video frames). Inputs are all checked before the model runs; outputs are written atomically. The
work is :func:`neural_render.pipelines.forward_clip.render_clip`.
"""

from __future__ import annotations

HELP = "render a clip's G-buffers (any subset) under an env map with the neural forward renderer to MP4/EXR"
DEFAULT_MODEL = "models/forward_tiny"  # inside the shipped data folder (neural_render.hub resolves it)


def add_model_arguments(parser, steps: int | None = None) -> None:
    """Options shared by forward, relight, edit and insert; steps: the --steps default (None: the model's)."""
    parser.add_argument("--model", default=None,
                        help=f"forward pipeline folder (default: shipped data/{DEFAULT_MODEL})")
    parser.add_argument("--steps", type=int, default=steps,
                        help="denoising steps (default 1: the x0 model needs one)" if steps == 1 else
                        "denoising steps (default: the model's: 1 for x0 models, 20 for DiffusionRenderer)")
    parser.add_argument("--window", type=int, default=None, help="video frames per window (default: the model's)")
    parser.add_argument("--overlap", type=int, default=None, help="video frames shared by neighbouring windows")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--domain", choices=("real", "synthetic"), default="real",
                        help="Realiz3D domain of every block (default real; matters only for models with shifters)")
    parser.add_argument("--reassign-blocks", type=int, default=0,
                        help="Realiz3D: first N blocks use e_synthetic during the first --reassign-steps steps")
    parser.add_argument("--reassign-steps", type=int, default=0,
                        help="Realiz3D reassignment: number of first denoising steps that use it (default 0: off)")
    parser.add_argument("--exposure", type=float, default=0.0, help="exposure in stops for MP4 output")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def add_arguments(parser) -> None:
    parser.add_argument("clip", help="clip folder with G-buffer passes (meta.json + frames/)")
    parser.add_argument("--envmap", help="HDR env map (.hdr/.exr) or shipped name; default: the clip's own")
    parser.add_argument("--rotate", default="0,0,0", help="yaw,pitch,roll in degrees (default 0,0,0)")
    parser.add_argument("--passes", nargs="+", default=None, metavar="PASS",
                        help="use only these passes (default: every forward pass the clip has)")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output .mp4 (sRGB) or a clip folder (linear EXR)")
    add_model_arguments(parser)
    parser.add_argument("--size", default=None, help="processing size, WxH or N (longer side), of models that take one "
                        "(DiffusionRenderer; default: its own); the output is at the clip's size")


def check_sampling(args) -> None:
    """The sampling options of :func:`add_model_arguments` (NeuralRenderError for bad values)."""
    from neural_render.errors import NeuralRenderError

    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    if args.window is not None and args.window < 1:
        raise NeuralRenderError(f"--window must be >= 1, got {args.window}")
    if args.overlap is not None and (args.overlap < 0 or (args.window is not None and args.overlap >= args.window)):
        raise NeuralRenderError(f"--overlap must be >= 0 and < --window, got {args.overlap}")
    if args.reassign_blocks < 0 or args.reassign_steps < 0:
        raise NeuralRenderError("--reassign-blocks and --reassign-steps must be >= 0")


def render_kwargs(args) -> dict:
    """The sampling options -> keyword arguments of ForwardPipeline.render."""
    import torch

    return {"num_steps": args.steps, "window": args.window, "overlap": args.overlap, "domain": args.domain,
            "reassign_blocks": args.reassign_blocks, "reassign_steps": args.reassign_steps,
            "generator": torch.Generator().manual_seed(args.seed)}


def run(args) -> int:
    from pathlib import Path

    from neural_render.io.output import claim_output
    from neural_render.pipelines.forward_clip import render_clip
    from neural_render.pipelines.frame_size import parse_size_arg

    check_sampling(args)
    size = parse_size_arg(args.size)
    out = Path(args.out)
    kind = "file" if out.suffix.lower() == ".mp4" else "dir"
    with claim_output(out, command="forward", kind=kind, overwrite=args.overwrite,
                      inputs=[args.clip, args.model, args.envmap]):
        print(render_clip(args.clip, out, args.envmap, args.rotate, args.passes, args.model, args.device,
                          args.exposure, processing_size=size, **render_kwargs(args)))
    return 0
