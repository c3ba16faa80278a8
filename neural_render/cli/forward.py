"""``neural-render forward CLIP_DIR --envmap X.hdr [--rotate yaw,pitch,roll] --out out.mp4``: neural forward rendering.

Renders a clip's G-buffers (any subset of basecolor, normal, depth, roughness, metallic; ``--passes`` picks a
subset) under an HDR env map with the clip's per-frame camera poses, using a forward pipeline (default: the shipped
``data/models/forward_tiny``). ``--rotate`` turns the env map (degrees; yaw about +Y, pitch, roll); without
``--envmap`` the clip's own env map is used. ``--out``: ``.mp4`` (display sRGB) or a clip folder (linear EXR rgb +
the G-buffers used). Long clips are rendered in overlapping latent windows (``--window`` / ``--overlap``).
Inputs are all checked before the model runs; outputs are written atomically.
"""

from __future__ import annotations

HELP = "render a clip's G-buffers (any subset) under an env map with the neural forward renderer to MP4/EXR"
DEFAULT_MODEL = "models/forward_tiny"  # inside the shipped data folder


def add_model_arguments(parser) -> None:
    """Options shared by forward, relight and edit."""
    parser.add_argument("--model", default=None, help=f"forward pipeline folder (default: shipped data/{DEFAULT_MODEL})")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default 1: the x0 model needs one)")
    parser.add_argument("--window", type=int, default=None, help="latent frames per window (default: the model's)")
    parser.add_argument("--overlap", type=int, default=None, help="frames shared by neighbouring windows")
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


def model_dir(path: str | None):
    from pathlib import Path

    from neural_render.data_assets import data_dir
    from neural_render.errors import NeuralRenderError

    if path is not None:
        return Path(path)
    folder = data_dir() / DEFAULT_MODEL
    if not folder.is_dir():
        raise NeuralRenderError("no shipped forward model here; pass --model DIR (written by ForwardTask.export / "
                                "scripts/train_forward_tiny.py)", folder)
    return folder


def load_forward(path: str | None, device: str = "cpu"):
    from neural_render.cli.inverse import resolve_device
    from neural_render.pipelines.forward import ForwardPipeline

    return ForwardPipeline.from_pretrained(model_dir(path), device=resolve_device(device))


def load_env(name_or_path: str, rotate: str = "0,0,0"):
    """Env map by shipped name or file, rotated by 'yaw,pitch,roll' (NeuralRenderError on bad files / angles)."""
    from neural_render.cli.shade import parse_rotation
    from neural_render.data_assets import envmap_path
    from neural_render.io import load_envmap

    yaw, pitch, roll = parse_rotation(rotate)
    return load_envmap(envmap_path(name_or_path)).rotated(yaw, pitch, roll)


def check_sampling(args) -> None:
    from neural_render.errors import NeuralRenderError

    if args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    if args.window is not None and args.window < 1:
        raise NeuralRenderError(f"--window must be >= 1, got {args.window}")
    if args.overlap is not None and (args.overlap < 0 or (args.window is not None and args.overlap >= args.window)):
        raise NeuralRenderError(f"--overlap must be >= 0 and < --window, got {args.overlap}")
    if args.reassign_blocks < 0 or args.reassign_steps < 0:
        raise NeuralRenderError("--reassign-blocks and --reassign-steps must be >= 0")


def render_kwargs(args) -> dict:
    import torch

    return {"num_steps": args.steps, "window": args.window, "overlap": args.overlap, "domain": args.domain,
            "reassign_blocks": args.reassign_blocks, "reassign_steps": args.reassign_steps,
            "generator": torch.Generator().manual_seed(args.seed)}


def write_mp4(path, rgb, fps: float, stops: float = 0.0, owner: str | None = None) -> None:
    """(1, T, 3, H, W) linear -> display MP4 (atomic); owner: the command writing it (io/output.py)."""
    from neural_render.io import write_video
    from neural_render.render.tonemap import display

    write_video(path, display(rgb[0], stops).permute(0, 2, 3, 1).contiguous().numpy(), fps=fps, owner=owner)


def run(args) -> int:
    from pathlib import Path

    from neural_render.io.output import claim_output

    check_sampling(args)
    out = Path(args.out)
    kind = "file" if out.suffix.lower() == ".mp4" else "dir"
    with claim_output(out, command="forward", kind=kind, overwrite=args.overwrite, inputs=[args.clip, args.model, args.envmap]):
        return _forward(args, out)


def _forward(args, out) -> int:
    from neural_render.data.forward_data import FORWARD_PASSES
    from neural_render.errors import NeuralRenderError
    from neural_render.io import Clip, read_clip, read_clip_envmap, read_meta, write_clip

    meta = read_meta(args.clip)
    stored = [p for p in FORWARD_PASSES if p in meta.passes]
    passes = stored if args.passes is None else list(dict.fromkeys(args.passes))
    bad = [p for p in passes if p not in FORWARD_PASSES]
    if bad:
        raise NeuralRenderError(f"--passes: unknown {bad}; the forward model takes {list(FORWARD_PASSES)}")
    missing = [p for p in passes if p not in stored]
    if missing or not passes:
        raise NeuralRenderError(f"clip lacks the passes {missing or list(FORWARD_PASSES)} (stored: {stored})", args.clip)
    if args.envmap:
        env = load_env(args.envmap, args.rotate)
    else:
        from neural_render.cli.shade import parse_rotation

        env = read_clip_envmap(args.clip, meta)
        if env is None:
            raise NeuralRenderError("clip names no env map; pass --envmap", args.clip)
        env = env.rotated(*parse_rotation(args.rotate))
    clip = read_clip(args.clip, passes=passes + (["mask"] if "mask" in meta.passes else []), rgb=False)
    gbuffer = clip.gbuffer.replace(mask=None)
    pipe = load_forward(args.model, args.device)
    rgb = pipe.render(gbuffer, clip.camera, env, **render_kwargs(args)).rgb
    if out.suffix.lower() == ".mp4":
        write_mp4(out, rgb, clip.meta.fps, args.exposure, owner="forward")
    else:
        import dataclasses

        meta = dataclasses.replace(clip.meta, envmap=None, extra=dict(clip.meta.extra, forward={
            "envmap": args.envmap or "clip", "rotate": args.rotate, "passes": passes, "model": str(model_dir(args.model))}))
        write_clip(out, Clip(rgb=rgb, gbuffer=clip.gbuffer, camera=clip.camera, meta=meta), owner="forward")  # mask kept
    print(out)
    return 0
