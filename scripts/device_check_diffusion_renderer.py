#!/usr/bin/env python
"""Device check of DiffusionRenderer-size checkpoints through this toolkit's pipelines (issue #24 B.3).

One prepared command for one H100 (well under 8 minutes; nothing is downloaded)::

    python scripts/device_check_diffusion_renderer.py --out device_check_dr.json

1. writes two folders of RANDOM weights in the exact DiffusionRenderer layout at the released size (SVD's
   spatio-temporal UNet config: 320/640/1280/1280 channels, 8 input channels + the pass table for the inverse
   model; 24 input channels, per-level env tokens and no temporal cross-attention for the forward model; its
   EnvEncoder on VAE latents with 320/640/1280/1280 channels; SVD's temporal-decoder VAE; SVD's Euler scheduler;
   a random rank-16 "real" LoRA on the forward UNet), weights in float16 as released;
2. loads them with ``load_for_command`` (the commands' ``--model DIR`` path) in bfloat16 and runs, at 512x512 x 24
   frames and 20 Euler steps, one inverse pass (basecolor) and one forward render (classifier-free guidance 1.2,
   an HDR env map turned by yaw / pitch / roll): seconds (after a 1-step warm-up) and peak GPU memory, printed beside
   DiffusionRenderer's published A100 times (9.7 s per inverse pass, 20.3 s forward);
3. the FLOP model: every module (UNets, env encoder, VAE encoder / decoder) traced once at the run's sizes under
   ``FakeTensorMode`` with ``torch.utils.flop_counter`` (neural_render/bench/gpu_estimate.py ``trace``: shapes
   only, no memory), summed over the run (steps, guidance batch, frames), and turned into seconds at the H100 /
   A100 bf16 peaks and into the FLOP/s achieved here and implied by the published times;
4. the nvdiffrast raster backend against the Mitsuba one on one scene (sphere + torus, 4 orbiting frames): mask
   agreement, per-pass differences on pixels both call foreground, seconds; skipped with the reason when nvdiffrast
   is not importable.

``--tiny``: the same steps at tiny size on the CPU (tiny configs, 64x64 x 6 frames in 4-frame windows, 2 steps;
tests/diffusion_renderer/test_device_check.py runs it); ``--flops-only``: step 3 alone (CPU, any size).
Writes the JSON report to ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

PUBLISHED_A100_S = {"inverse": 9.7, "forward": 20.3}  # DiffusionRenderer paper, 512x512x24, per inverse pass
PEAK_BF16 = {"H100": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks (SXM)
SVD_BLOCKS = dict(block_out_channels=[320, 640, 1280, 1280], num_attention_heads=[5, 10, 20, 20], layers_per_block=2,
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=768, num_frames=25,
                  sample_size=64, out_channels=4, transformer_layers_per_block=1)
TINY_BLOCKS = dict(block_out_channels=[32, 32], num_attention_heads=[1, 2], layers_per_block=1,
                   addition_time_embed_dim=4, projection_class_embeddings_input_dim=12, num_frames=3, sample_size=8,
                   out_channels=4, transformer_layers_per_block=1)
DOWN, UP = "CrossAttnDownBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"


def configs(tiny: bool) -> dict:
    """unet_inverse / unet_forward / env_encoder / vae configs (DiffusionRenderer's keys)."""
    blocks = TINY_BLOCKS if tiny else SVD_BLOCKS
    n = len(blocks["block_out_channels"])
    widths = list(blocks["block_out_channels"])
    layout = dict(down_block_types=[DOWN] * (n - 1) + ["DownBlockSpatioTemporal"],
                  up_block_types=["UpBlockSpatioTemporal"] + [UP] * (n - 1))
    token = 32 if tiny else 1024
    inverse = dict(blocks, **layout, in_channels=8, cross_attention_dim=token, temporal_cross_attention_dim=token,
                   multi_res_encoder_hidden_states=False, context_embedding_type="clip", context_vocab_size=16)
    forward = dict(blocks, **layout, in_channels=24, cross_attention_dim=widths, temporal_cross_attention_dim=None,
                   multi_res_encoder_hidden_states=True, context_embedding_type=None, context_vocab_size=16)
    vae_widths = [32, 32] if tiny else [128, 256, 512, 512]
    vae = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_widths,
               down_block_types=["DownEncoderBlock2D"] * len(vae_widths), layers_per_block=1 if tiny else 2,
               sample_size=16 if tiny else 768, scaling_factor=0.18215, force_upcast=True)
    env = dict(in_channels=12, channels=widths, num_res_blocks=1 if tiny else 2, latent_encoder=True,
               in_labels=["env_ldr", "env_log", "env_nrm"])
    return {"unet_inverse": inverse, "unet_forward": forward, "vae": vae, "env_encoder": env}


SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "interpolation_type": "linear", "num_train_timesteps": 1000,
             "prediction_type": "v_prediction", "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1,
             "timestep_spacing": "leading", "timestep_type": "continuous", "use_karras_sigmas": True}


def _write(folder: Path, sub: str, class_name: str, config: dict, module) -> None:
    from safetensors.torch import save_file

    (folder / sub).mkdir(parents=True)
    (folder / sub / "config.json").write_text(json.dumps({"_class_name": class_name, **config}, indent=1))
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / sub / "diffusion_pytorch_model.safetensors"))


def write_folder(folder: Path, kind: str, cfg: dict, device, seed: int = 0) -> Path:
    """A random-weight DiffusionRenderer folder of ``kind`` (module doc), modules initialised on ``device``."""
    from diffusers import AutoencoderKLTemporalDecoder

    from neural_render.models.diffusion_renderer.env_encoder import EnvEncoder
    from neural_render.models.diffusion_renderer.lora import add_lora, lora_file_state
    from neural_render.models.diffusion_renderer.unet_context import DiffusionRendererUNet

    torch.manual_seed(seed)
    index = {"_class_name": "RGBXVideoDiffusionPipeline", "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
             "unet": ["src.models.custom_unet_st", "UNetCustomSpatioTemporalConditionModel"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "env_encoder": ["src.models.env_encoder", "EnvEncoder"] if kind == "forward" else [None, None]}
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=1))
    with torch.device(device):
        unet_cfg = cfg[f"unet_{kind}"]
        unet = DiffusionRendererUNet(**unet_cfg)
        _write(folder, "unet", "UNetCustomSpatioTemporalConditionModel", unet_cfg, unet)
        _write(folder, "vae", "AutoencoderKLTemporalDecoder", cfg["vae"], AutoencoderKLTemporalDecoder(**cfg["vae"]))
        if kind == "forward":
            _write(folder, "env_encoder", "EnvEncoder", cfg["env_encoder"], EnvEncoder(**cfg["env_encoder"]))
            add_lora(unet, rank=16, scale=0.25)
            for layer in (m for m in unet.modules() if hasattr(m, "lora_B")):  # B = 0 would be a no-op LoRA
                torch.nn.init.normal_(layer.lora_B["real-lora"].weight, std=1e-3)
            from safetensors.torch import save_file

            (folder / "lora").mkdir()
            save_file({k: v.to("cpu", torch.float16).contiguous() for k, v in lora_file_state(unet).items()},
                      str(folder / "lora" / "pytorch_lora_weights.safetensors"))
    return folder


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn) -> tuple[object, float, float | None]:
    """(result, seconds, peak GPU GiB or None on the CPU) of ``fn()``."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    seconds = time.perf_counter() - start
    return out, seconds, (torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None)


def run_pipelines(root: Path, cfg: dict, device, size: int, frames: int, steps: int, window: int, overlap: int,
                  dtype: torch.dtype) -> dict:
    """Write, load and run the inverse and forward folders (module doc, steps 1-2)."""
    from neural_render.pipelines.diffusion_renderer import load_for_command
    from neural_render.pipelines.relight import static_camera
    from neural_render.types import EnvMap, GBuffer

    gen = torch.Generator().manual_seed(0)
    video = torch.rand(1, frames, 3, size, size, generator=gen)
    out = {}
    for kind in ("inverse", "forward"):
        _, write_s, _ = timed(device, lambda: write_folder(root / kind, kind, cfg, device))
        with torch.device(device):  # modules are built on the device (no slow CPU init of 1.5 B parameters)
            pipe, load_s, _ = timed(device, lambda: load_for_command(root / kind, kind, device=device, dtype=dtype))
        options = dict(processing_size=(size, size), window=window, overlap=overlap)
        if kind == "inverse":
            def call(n, pipe=pipe):
                return pipe(video, passes=["basecolor"], num_steps=n, **options).gbuffer.basecolor
        else:
            g = GBuffer(basecolor=video, normal=torch.nn.functional.normalize(video - 0.5, dim=2),
                        depth=1 + video[:, :, :1], roughness=video[:, :, 1:2], metallic=video[:, :, 2:3])
            sky = torch.rand(3, 64, 128, generator=gen)
            sky[:, 10:14, 40:46] = 500.0  # a sun
            env = EnvMap(sky).rotated(yaw=30.0, pitch=10.0, roll=5.0)

            def call(n, pipe=pipe, g=g, env=env):
                return pipe(g, static_camera(video), env, num_steps=n, **options).rgb
        _, warm_s, _ = timed(device, lambda call=call: call(1))
        result, seconds, peak = timed(device, lambda call=call: call(steps))
        out[kind] = {"seconds": seconds, "peak_gpu_GiB": peak, "warmup_1_step_s": warm_s, "load_s": load_s,
                     "write_folder_s": write_s, "finite": bool(torch.isfinite(result).all()),
                     "output_shape": list(result.shape)}
        del pipe, result
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return out


def flop_model(cfg: dict, size: int, frames: int, steps: int, chunk: int = 8) -> dict:
    """TFLOPs of one inverse pass and one forward render (module doc, step 3)."""
    from diffusers import AutoencoderKLTemporalDecoder
    from torch._subclasses.fake_tensor import FakeTensorMode

    from neural_render.bench.gpu_estimate import trace
    from neural_render.models.diffusion_renderer.env_encoder import EnvEncoder
    from neural_render.models.diffusion_renderer.unet_context import DiffusionRendererUNet
    from neural_render.pipelines.diffusion_renderer_values import env_shape

    factor = 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)
    h = size // factor
    eh = env_shape((size, size), 512, (512, 512), factor)[0] // factor  # env latents, sized as the forward pipeline
    widths = cfg["unet_forward"]["block_out_channels"]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    e = torch.empty
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            unet = DiffusionRendererUNet(**cfg["unet_inverse"])  # pass id left out: one row added, no FLOPs
            token = e(1, 1, 1, cfg["unet_inverse"]["cross_attention_dim"])
            inv, _ = trace(unet, (e(1, frames, 8, h, h), e(()), token, e(1, 3)), {"return_dict": False})
            unet = DiffusionRendererUNet(**cfg["unet_forward"])
            tokens = [e(2, 1, max(1, eh // 2 ** i) ** 2, w) for i, w in enumerate(widths)]  # CFG batch 2, one env frame
            fwd, _ = trace(unet, (e(2, frames, 24, h, h), e(()), tokens, e(2, 3)), {"return_dict": False})
            env, _ = trace(EnvEncoder(**cfg["env_encoder"]), (e(1, 12, eh, eh),), {})
            vae = AutoencoderKLTemporalDecoder(**cfg["vae"])
            enc, _ = trace(vae.encode, (e(1, 3, size, size),), {})
            dec, _ = trace(vae.decode, (e(chunk, 4, h, h),), {"num_frames": chunk})
    finally:
        torch.set_default_dtype(default)
    decode = dec * frames / chunk
    runs = {"inverse": frames * enc + steps * inv + decode,
            "forward": 5 * frames * enc + 3 * enc + env + steps * fwd + decode}  # static camera: one env frame
    return {"unet_TFLOP_per_step": {"inverse": inv / 1e12, "forward_cfg_batch2": fwd / 1e12},
            "vae_encode_TFLOP_per_frame": enc / 1e12, "vae_decode_TFLOP_per_frame": dec / chunk / 1e12,
            "env_encoder_TFLOP": env / 1e12, "run_TFLOP": {k: v / 1e12 for k, v in runs.items()},
            "seconds_at_peak": {gpu: {k: v / peak for k, v in runs.items()} for gpu, peak in PEAK_BF16.items()},
            "published_A100_utilisation": {k: runs[k] / (PUBLISHED_A100_S[k] * PEAK_BF16["A100"])
                                           for k in runs} if size == 512 and frames == 24 and steps == 20 else None}


def raster_check(size: int = 256, frames: int = 4) -> dict:
    """nvdiffrast vs Mitsuba G-buffers of one scene (module doc, step 4)."""
    from neural_render.raster import Material, Mesh, rasterize
    from neural_render.raster.nvdiffrast_backend import nvdiffrast_available
    from neural_render.synth import shapes
    from neural_render.types import Camera, look_at

    usable, why = nvdiffrast_available()
    if not usable:
        return {"skipped": f"nvdiffrast backend not usable here: {why}"}
    angles = torch.linspace(0, 0.6, frames)
    eyes = torch.stack([3 * torch.sin(angles), 0.8 + 0 * angles, 3 * torch.cos(angles)], dim=1)
    camera = Camera.from_fov(40.0, size, size, look_at(eyes, torch.zeros(frames, 3))[None])
    moved = torch.eye(4)
    moved[:3, 3] = torch.tensor([0.7, 0.0, -0.3])
    meshes = []
    for geometry, material, to_world in ((shapes.uv_sphere(0.6), Material((0.8, 0.2, 0.1), 0.4, 0.0), torch.eye(4)),
                                         (shapes.torus(), Material((0.1, 0.5, 0.9), 0.2, 1.0), moved)):
        meshes.append(Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material, to_world))
    out = {}
    for backend in ("mitsuba", "nvdiffrast"):
        start = time.perf_counter()
        out[backend] = rasterize(meshes, camera, backend=backend)
        out[f"{backend}_s"] = time.perf_counter() - start
    a, b = out["mitsuba"], out["nvdiffrast"]
    both = (a.mask > 0.5) & (b.mask > 0.5)
    diffs = {name: float((a.passes[name] - b.passes[name]).abs().masked_select(both.expand_as(a.passes[name]))
                         .mean()) for name in ("basecolor", "normal", "depth", "roughness", "metallic")}
    return {"size": size, "frames": frames, "mask_agreement": float(((a.mask > 0.5) == (b.mask > 0.5)).float().mean()),
            "mean_abs_diff_on_common_foreground": diffs, "mitsuba_s": out["mitsuba_s"],
            "nvdiffrast_s": out["nvdiffrast_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (the test of this script)")
    parser.add_argument("--flops-only", action="store_true", help="only the FLOP model (no weights, no device)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    tiny = bool(args.tiny)
    size, frames, steps, window, overlap = (64, 6, 2, 4, 2) if tiny else (512, 24, 20, 24, 6)
    device = args.device or ("cpu" if tiny or not torch.cuda.is_available() else "cuda")
    cfg = configs(tiny)
    report = {"mode": "tiny" if tiny else "full", "size": size, "frames": frames, "steps": steps,
              "window": window, "overlap": overlap, "device": torch.cuda.get_device_name(0) if device == "cuda"
              else "cpu", "torch": torch.__version__, "dtype": "float32" if tiny else "bfloat16",
              "published_A100_s": PUBLISHED_A100_S, "flop_model": flop_model(cfg, size, frames, steps)}
    if not args.flops_only:
        with tempfile.TemporaryDirectory(prefix="dr_device_check_") as tmp:
            report["runs"] = run_pipelines(Path(tmp), cfg, device, size, frames, steps, window, overlap,
                                           torch.float32 if tiny else torch.bfloat16)
        report["raster"] = raster_check(32 if tiny else 256, 2 if tiny else 4)
    Path(args.out).write_text(json.dumps(report, indent=1))
    fm = report["flop_model"]
    print(f"DiffusionRenderer-size check ({report['mode']}, {report['device']}, {size}x{size} x {frames}, "
          f"{steps} steps)")
    print("| run | seconds | peak GiB | TFLOP | s at H100 peak | s at A100 peak | published A100 s |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("inverse", "forward"):
        r = report.get("runs", {}).get(kind, {})
        sec = f"{r['seconds']:.2f}" if r else "-"
        peak = f"{r['peak_gpu_GiB']:.1f}" if r.get("peak_gpu_GiB") is not None else "-"
        print(f"| {kind} | {sec} | {peak} | {fm['run_TFLOP'][kind]:.1f} | {fm['seconds_at_peak']['H100'][kind]:.2f} "
              f"| {fm['seconds_at_peak']['A100'][kind]:.2f} | {PUBLISHED_A100_S[kind]} |")
    print(f"raster: {report.get('raster')}")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
