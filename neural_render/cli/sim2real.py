"""``neural-render sim2real VIDEO --lora DIR --out out.mp4 [--strength s]``: rendered video -> realistic video.

VIDEO: an MP4 (or other ffmpeg-readable) file, a folder of PNG/JPG frames, or a clip folder (its rgb; for a
``synth --proxy`` clip the rendered side in ``rendered/``). ``--lora DIR``: either a sim2real model folder (a
pipeline folder with ``sim2real_config.json``, e.g. ``neural-render fit --export_dir`` of the sim2real task) or a
bare IC-LoRA folder (``ic_lora.json`` + peft files, :func:`neural_render.models.ic_lora.save_ic_lora`) applied to
the base pipeline given by ``--base`` (or named in its ``ic_lora.json`` info). A LoRA made for another backbone, a
video whose size is not a multiple of the model stride (without ``--size``), unreadable input -> exit 2.
``--strength`` scales the LoRA (0 = base model, 1 = as trained). Long videos run in overlapping windows blended in
latent space (``--window``/``--overlap`` in latent frames). Output: ``.mp4`` (sRGB, browser-playable) or a clip
folder (linear EXR rgb + the input's camera), written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

HELP = "translate a rendered video into a realistic one with the sim-to-real IC-LoRA (RealMaster)"


def add_arguments(parser) -> None:
    parser.add_argument("video", help="video file, folder of frames, or clip folder")
    parser.add_argument("--lora", required=True, help="sim2real model folder or IC-LoRA folder")
    parser.add_argument("--base", default=None, help="base pipeline folder for a bare IC-LoRA folder")
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output .mp4 or clip folder")
    parser.add_argument("--strength", type=float, default=1.0, help="LoRA scale (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--window", type=int, default=None, help="latent frames per window (default: the model's)")
    parser.add_argument("--overlap", type=int, default=None, help="latent frames shared by windows (default: model's)")
    parser.add_argument("--size", default=None,
                        help="processing size: WxH or N (longer side), multiples of the model stride "
                             "(default: the input size)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_hw(text: str | None):
    """--size: 'WxH' -> (h, w), 'N' -> N (longer side; resolved against the input by :func:`processing_hw`), None."""
    from neural_render.pipelines.frame_size import parse_size_arg

    return parse_size_arg(text)


def processing_hw(size, rgb, stride: int):
    """--size N (longer side) -> (h, w) for this video, in multiples of ``stride``; (h, w) and None unchanged."""
    if not isinstance(size, int):
        return size
    from neural_render.pipelines.frame_size import processing_shape

    return processing_shape(int(rgb.shape[-2]), int(rgb.shape[-1]), stride, size)


def read_video_input(path: str | os.PathLike):
    """Video file / frame folder / clip folder -> (rgb (1, T, 3, H, W) linear float32, Camera or None, fps)."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_video
    from neural_render.render.tonemap import srgb_to_linear

    p = Path(path)
    if p.is_dir() and (p / "meta.json").is_file():
        source = p / "rendered" if (p / "rendered" / "meta.json").is_file() else p
        clip = read_clip(source, passes=[])
        if clip.rgb is None:
            raise NeuralRenderError("clip folder has no rgb to translate", source)
        return clip.rgb, clip.camera, clip.meta.fps
    frames, fps = read_video(p)
    if frames.shape[0] < 1:
        raise NeuralRenderError("video has no frames", p)
    rgb = srgb_to_linear(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)[None].contiguous()
    return rgb, None, fps


def load_sim2real(lora: str | os.PathLike, base: str | os.PathLike | None = None):
    """A :class:`Sim2RealPipeline` from a model folder, or from a bare IC-LoRA folder + base pipeline folder."""
    from neural_render.errors import NeuralRenderError
    from neural_render.models.ic_lora import IC_LORA_FILE, check_lora_fits, load_ic_lora, read_ic_lora_info
    from neural_render.pipelines.base import load_pipeline
    from neural_render.pipelines.sim2real import SIM2REAL_CONFIG, Sim2RealPipeline

    root = Path(lora)
    if not root.is_dir():
        raise NeuralRenderError("no such LoRA / model folder", root)
    if (root / SIM2REAL_CONFIG).is_file():
        if base is not None:
            raise NeuralRenderError("--base is only for bare IC-LoRA folders; this is a full sim2real model", root)
        return Sim2RealPipeline.from_pretrained(root)
    if not (root / IC_LORA_FILE).is_file():
        raise NeuralRenderError(f"neither a sim2real model ({SIM2REAL_CONFIG}) nor an IC-LoRA folder ({IC_LORA_FILE})",
                                root)
    record = read_ic_lora_info(root)
    info = record.get("info", {})
    base = base or info.get("base")
    if base is None:
        raise NeuralRenderError("bare IC-LoRA folder: give the base pipeline with --base", root)
    base_path = Path(base) if Path(base).is_absolute() or Path(base).exists() else root / base
    pipe = load_pipeline(base_path)
    check_lora_fits(pipe.backbone, record, root)
    load_ic_lora(pipe.backbone, root)
    return Sim2RealPipeline(pipe.backbone, pipe.denoiser, pipe.codec, None, target=info.get("target", "residual"),
                            adapter=record.get("adapter_name"), num_steps=info.get("num_steps"),
                            window=int(info.get("window", 8)), overlap=int(info.get("overlap", 2)),
                            info={"global_step": int(info.get("global_step", 0) or 0), "lora": os.fspath(root)})


def write_output(out: str | os.PathLike, rgb, camera, fps: float, owner: str | None = None) -> None:
    """(1, T, 3, H, W) linear -> .mp4 (sRGB) or a clip folder (linear EXR), atomically."""
    from neural_render.io import Clip, write_clip, write_video
    from neural_render.io.clip import ClipMeta
    from neural_render.render.tonemap import display
    from neural_render.types import Camera, GBuffer

    out = Path(out)
    if out.suffix.lower() == ".mp4":
        write_video(out, display(rgb[0]).permute(0, 2, 3, 1).contiguous().numpy(), fps=fps, owner=owner)
        return
    if camera is None:
        import torch

        t, h, w = rgb.shape[1], rgb.shape[-2], rgb.shape[-1]
        camera = Camera.from_fov(60.0, w, h, torch.eye(4).expand(1, t, 4, 4).clone())
    write_clip(out, Clip(rgb=rgb.contiguous(), gbuffer=GBuffer(), camera=camera, meta=ClipMeta.for_camera(camera, fps=fps)),
               owner=owner)


def run(args) -> int:
    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output

    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    size = parse_hw(args.size)
    kind = "file" if Path(args.out).suffix.lower() == ".mp4" else "dir"
    with claim_output(args.out, command="sim2real", kind=kind, overwrite=args.overwrite,
                      inputs=[args.video, args.lora, args.base]):
        return _sim2real(args, size)


def _sim2real(args, size) -> int:
    import logging

    import torch

    pipe = load_sim2real(args.lora, args.base)
    if not pipe.is_trained:
        logging.getLogger(__name__).warning("sim2real: this model was never trained (global_step 0); output is "
                                            "meaningless")
    rgb, camera, fps = read_video_input(args.video)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    out = pipe(rgb, strength=args.strength, num_steps=args.steps, window=args.window, overlap=args.overlap,
               processing_size=processing_hw(size, rgb, pipe.stride), seed=args.seed, progress=not args.no_progress)
    write_output(args.out, out.frames, camera, float(args.fps or fps), owner="sim2real")
    ph, pw = out.processing_size
    print(f"{args.out}  ({out.frames.shape[1]} frames, {len(out.windows)} window(s), strength {args.strength}, "
          f"processed at {pw}x{ph})")
    return 0
