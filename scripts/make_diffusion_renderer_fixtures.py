#!/usr/bin/env python
"""Make the DiffusionRenderer parity fixtures (``tests/fixtures/diffusion_renderer/``) WITH THE REFERENCE CODE.

What it writes
    inverse/   a tiny random checkpoint in DiffusionRenderer's inverse layout: model_index.json
               (RGBXVideoDiffusionPipeline), unet/ (UNetCustomSpatioTemporalConditionModel, one level, context
               embedding "clip", temporal cross-attention, 8 input channels), vae/ (AutoencoderKLTemporalDecoder,
               the same weights in both folders), scheduler/ (EulerDiscreteScheduler)
    forward/   the same for the forward renderer: unet/ (two levels, 24 input channels, a width per level,
               per-level env tokens, no temporal cross-attention, no context embedding), vae/, scheduler/,
               env_encoder/ (EnvEncoder on VAE latents of the three env encodings) and
               lora/pytorch_lora_weights.safetensors (a rank-2 LoRA on every attention q/k/v/out projection, saved
               the way diffusers' LoRA training scripts save one)
    reference_inverse.safetensors, reference_forward.safetensors
               fixed inputs and the reference implementation's outputs on them (float32): the UNet output for
               every pass id (and a batch mixing two ids), the env encoder features, VAE latents and a chunked
               temporal decode, one Euler step, the 20-step schedules, and the whole pipeline's 2-step output from
               fixed initial noise (``latents=``) for every inverse pass and for the forward renderer with and
               without the LoRA (scale 0.25, CFG 1.2 with zero latents / zero env tokens as the unconditional input)
    provenance.json
               versions, the reference commit, the command and every shape
    layouts.json
               state-dict layouts (key -> shape) of a pixel-space EnvEncoder and of a UNet whose context embedding
               enters the time embedding ("time"), and the reference's own error when asked to run the latter

Every component is built with the reference repository's own classes (its UNet, its EnvEncoder, its pipeline's
``save_pretrained``, diffusers' ``save_lora_weights``), then READ BACK from the written folders the way the
reference inference scripts read them, and only then run. Weights are random: parameters are perturbed away from
their initial values (so norms, biases and blend factors are not at their defaults) and several pass-embedding rows
are given norms above the embedding's ``max_norm`` of 10, so the renormalisation is exercised. The weight files
are stored in float16 to keep the fixtures small (4.2 MB on disk, the VAE twice, once in git); both sides
up-cast them to float32 and every recorded number is computed in float32 on the CPU. Sizes are tiny: 32
channels, one or two UNet levels, a two-level VAE (scale factor 2), 3 frames of 16x32 pixels (not square), env
maps of 16x16 pixels. The global torch generator is seeded, so a rerun writes byte-identical files.

How the committed fixtures were made (the reference's licence is non-commercial: nothing of it is copied into
this repository; it is imported at run time from a separate checkout, and only its outputs on random weights are
stored)::

    # reference: github.com/nv-tlabs/diffusion-renderer at commit 8fcf0057ad3422139cd53281037025ff725d34e9
    # ("Update README.md", 2025-06-12), exported OUTSIDE this repository:
    #   git --git-dir=<clone>/.git archive 8fcf0057ad34 | tar -x -C /work/dr_ref
    python3 -m venv /work/dr_env
    /work/dr_env/bin/pip install torch==2.13.0 diffusers==0.32.0 transformers==4.47.1 peft==0.7.0 \
        accelerate==1.3.0 huggingface_hub==0.25.0 einops imageio safetensors numpy pillow
    OMP_NUM_THREADS=1 /work/dr_env/bin/python scripts/make_diffusion_renderer_fixtures.py \
        --reference-repo /work/dr_ref --reference-commit 8fcf0057ad3422139cd53281037025ff725d34e9 \
        --out tests/fixtures/diffusion_renderer

(diffusers, transformers, peft, accelerate and huggingface_hub are the reference's pinned versions, einops and
imageio the unpinned modules its code imports (einops 0.8.2, imageio 2.38.2, numpy 2.4.6, safetensors 0.8.0 here);
torch is the local CPU wheel.) The script runs in that side environment only; it imports nothing from
``neural_render``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

FRAMES, HEIGHT, WIDTH, ENV_SIZE = 3, 16, 32, 16
WIDTH_CH = 32
PASSES = ("basecolor", "metallic", "roughness", "normal", "depth")  # the reference's pass ids 0..4
FORWARD_CONDS = {  # the reference forward inference config's cond_images, in its order
    "basecolor": "vae", "normal": "vae", "depth": "vae", "roughness": "vae", "metallic": "vae",
    "env_ldr": "env", "env_log": "env", "env_nrm": "env",
}
#: Stable Video Diffusion's scheduler settings (what a DiffusionRenderer scheduler/ folder holds; the keys
#: Euler does not take, clip_sample / set_alpha_to_one / skip_prk_steps, are dropped by from_config)
SCHEDULER = {
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "set_alpha_to_one": False, "sigma_max": 700.0, "sigma_min": 0.002, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "timestep_type": "continuous", "trained_betas": None, "use_karras_sigmas": True,
}
LORA_SCALE, FORWARD_CFG, DECODE_CHUNK = 0.25, 1.2, 2


def _perturb(module: torch.nn.Module, gen: torch.Generator, scale: float = 0.05) -> None:
    """Move every parameter away from its initial value (relative noise plus a small absolute part)."""
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.add_(noise * (scale * p.detach().abs().mean().clamp_min(0.02)))


def _tiny_vae(gen):
    from diffusers import AutoencoderKLTemporalDecoder

    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(WIDTH_CH, WIDTH_CH), down_block_types=("DownEncoderBlock2D",) * 2,
        layers_per_block=1, latent_channels=4, sample_size=HEIGHT,
    )
    _perturb(vae, gen)
    return vae


def _unet_kwargs(levels: int = 2, **extra):
    """Two levels: SVD's pattern (cross-attention levels, then a plain one); one level: a single
    cross-attention level (the inverse fixture, to keep the files small)."""
    down = ("CrossAttnDownBlockSpatioTemporal",) * (levels - 1) + ("DownBlockSpatioTemporal",)
    up = ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (levels - 1)
    if levels == 1:
        down, up = ("CrossAttnDownBlockSpatioTemporal",), ("CrossAttnUpBlockSpatioTemporal",)
    return dict(
        sample_size=HEIGHT // 2, out_channels=4, block_out_channels=(WIDTH_CH,) * levels,
        down_block_types=down, up_block_types=up, layers_per_block=1, num_attention_heads=(1, 2)[-levels:],
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=12, transformer_layers_per_block=1,
        num_frames=FRAMES, **extra,
    )


def _set_context_rows(unet, gen):
    """Pass-embedding rows of chosen norms: some above max_norm (10), so the lookup renormalises them."""
    norms = [25.0, 3.0, 12.0, 0.5, 40.0, 8.0]
    with torch.no_grad():
        w = unet.context_embedding.weight
        for i, n in enumerate(norms):
            row = torch.randn(w.shape[1], generator=gen)
            w[i] = row / row.norm() * n


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(SCHEDULER)


def build_checkpoints(out: Path, ref) -> None:
    """Write inverse/ and forward/ with the reference's own classes and save_pretrained."""
    gen = torch.Generator().manual_seed(24)
    vae = _tiny_vae(gen)  # one VAE for both folders, as both DiffusionRenderer checkpoints carry SVD's
    inv_unet = ref.UNet(**_unet_kwargs(1, in_channels=8, cross_attention_dim=WIDTH_CH,
                                       temporal_cross_attention_dim=WIDTH_CH, context_embedding_type="clip"))
    _perturb(inv_unet, gen)
    _set_context_rows(inv_unet, gen)
    inv = ref.Pipeline(vae=vae, image_encoder=None, unet=inv_unet, scheduler=_scheduler(),
                       feature_extractor=None, env_encoder=None)
    inv.to(torch.float16).save_pretrained(out / "inverse", safe_serialization=True)

    fwd_unet = ref.UNet(**_unet_kwargs(in_channels=24, cross_attention_dim=(WIDTH_CH, WIDTH_CH),
                                       temporal_cross_attention_dim=None, multi_res_encoder_hidden_states=True))
    _perturb(fwd_unet, gen)
    env = ref.EnvEncoder(in_channels=12, channels=(WIDTH_CH, WIDTH_CH), num_res_blocks=1, latent_encoder=True)
    _perturb(env, gen)
    fwd = ref.Pipeline(vae=vae, image_encoder=None, unet=fwd_unet, scheduler=_scheduler(),
                       feature_extractor=None, env_encoder=env, scale_cond_latents=True, cond_mode="env")
    fwd.to(torch.float16).save_pretrained(out / "forward", safe_serialization=True)
    # the pipeline lists env_encoder in model_index.json but, as an optional argument, does not save it; the
    # reference forward script reads it with EnvEncoder.from_pretrained(folder, subfolder="env_encoder")
    env.save_pretrained(out / "forward" / "env_encoder", safe_serialization=True)

    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    lora_unet = ref.UNet.from_pretrained(out / "forward", subfolder="unet").to(torch.float32)
    lora_unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=True,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, p in lora_unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(lora_unet))
    layers = {k: v.to(torch.float16) for k, v in layers.items()}
    ref.Pipeline.save_lora_weights(out / "forward" / "lora", unet_lora_layers=layers)


class Reference:
    """The reference repository's classes, imported from its checkout at run time."""

    def __init__(self, repo: Path):
        sys.path.insert(0, str(repo))
        os.chdir(repo)  # its pipeline module imports ``utils.utils_rgbx`` relative to the checkout
        from src.models.custom_unet_st import UNetCustomSpatioTemporalConditionModel
        from src.models.env_encoder import EnvEncoder
        from src.pipelines.pipeline_rgbx import RGBXVideoDiffusionPipeline

        self.UNet, self.EnvEncoder, self.Pipeline = (UNetCustomSpatioTemporalConditionModel, EnvEncoder,
                                                     RGBXVideoDiffusionPipeline)


def load_inverse(ref, folder: Path):
    """As the reference inverse script loads a folder (minus the CLIP download it never uses in 'skip' mode)."""
    pipe = ref.Pipeline.from_pretrained(folder, cond_mode="skip", use_deterministic_mode=False,
                                        image_encoder=None, feature_extractor=None)
    return pipe.to(torch.float32)


def load_forward(ref, folder: Path, with_lora: bool):
    """As the reference forward script loads a folder: components one by one, trailing spacing, the LoRA."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler

    pipe = ref.Pipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(folder, subfolder="vae"), image_encoder=None,
        feature_extractor=None, unet=ref.UNet.from_pretrained(folder, subfolder="unet"),
        scheduler=EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler"),
        env_encoder=ref.EnvEncoder.from_pretrained(folder, subfolder="env_encoder"),
        scale_cond_latents=True, cond_mode="env",
    )
    pipe.scheduler.register_to_config(timestep_spacing="trailing")
    if with_lora:
        pipe.load_lora_weights(str(folder), subfolder="lora", adapter_name="real-lora")
        from peft.tuners.tuners_utils import BaseTunerLayer

        n = sum(isinstance(m, BaseTunerLayer) for m in pipe.unet.modules())
        if n == 0:
            raise SystemExit("the reference did not load the LoRA")
    pipe = pipe.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _time_ids(batch: int) -> torch.Tensor:
    return torch.tensor([[7 - 1, 127, 0.0]] * batch)  # fps 7 (conditioned on fps-1), motion 127, no noise aug


def _one_step(scheduler, sample, model_out, rec: dict, tag: str) -> None:
    scheduler.set_timesteps(2)
    t0 = scheduler.timesteps[0]
    rec[f"{tag}.timesteps"] = scheduler.timesteps.float().clone()
    rec[f"{tag}.sigmas"] = scheduler.sigmas.float().clone()
    rec[f"{tag}.scaled_input"] = scheduler.scale_model_input(sample, t0)
    rec[f"{tag}.prev_sample"] = scheduler.step(model_out, t0, sample).prev_sample
    scheduler.set_timesteps(20)
    rec[f"{tag}.timesteps20"] = scheduler.timesteps.float().clone()
    rec[f"{tag}.sigmas20"] = scheduler.sigmas.float().clone()


@torch.no_grad()
def record_inverse(ref, folder: Path) -> dict:
    gen = torch.Generator().manual_seed(1)
    rec: dict = {}
    pipe = load_inverse(ref, folder)
    unet, vae = pipe.unet, pipe.vae
    lat_hw = (HEIGHT // 2, WIDTH // 2)
    x = torch.randn(1, FRAMES, 8, *lat_hw, generator=gen)
    rec["unet.input"], rec["unet.timestep"] = x, torch.tensor(0.75)
    zero_tokens = torch.zeros(1, 1, 1, unet.config.cross_attention_dim)  # 'skip' mode: no CLIP token
    for pid in range(len(PASSES) + 1):  # 5 = diffuse_albedo, also in the reference's table
        out = unet(x, rec["unet.timestep"], zero_tokens, added_time_ids=_time_ids(1),
                   input_context=torch.tensor([pid])).sample
        rec[f"unet.out.pass{pid}"] = out
    xb = torch.randn(2, FRAMES, 8, *lat_hw, generator=gen)
    rec["unet.batch_input"], rec["unet.batch_ids"] = xb, torch.tensor([4, 1])
    rec["unet.batch_out"] = unet(xb, rec["unet.timestep"], zero_tokens.repeat(2, 1, 1, 1),
                                 added_time_ids=_time_ids(2), input_context=rec["unet.batch_ids"]).sample
    rec["context_embedding.weight_as_saved"] = _saved_tensor(folder / "unet", "context_embedding.weight")

    img = torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=gen) * 2 - 1
    rec["vae.image"] = img
    rec["vae.latents"] = vae.encode(img).latent_dist.mode()
    z = torch.randn(FRAMES, 4, *lat_hw, generator=gen)
    rec["vae.decode_input"] = z
    chunks = [z[i:i + DECODE_CHUNK] for i in range(0, FRAMES, DECODE_CHUNK)]
    rec["vae.decoded_chunked"] = torch.cat([vae.decode(c, num_frames=len(c)).sample for c in chunks])
    s = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen) * 700.0
    m = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen)
    rec["step.sample"], rec["step.model_out"] = s, m
    _one_step(pipe.scheduler, s, m, rec, "step")

    rgb = torch.rand(1, FRAMES, HEIGHT, WIDTH, 3, generator=gen)
    noise = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen)
    rec["pipe.rgb_bfhwc"], rec["pipe.latents"] = rgb, noise
    for pid, name in enumerate(PASSES):
        kwargs = {"height": HEIGHT, "width": WIDTH, "num_frames": FRAMES, "num_inference_steps": 2,
                      "min_guidance_scale": 1.0, "max_guidance_scale": 1.0, "fps": 7, "motion_bucket_id": 127,
                      "noise_aug_strength": 0, "generator": torch.Generator().manual_seed(0),
                      "decode_chunk_size": DECODE_CHUNK, "latents": noise.clone()}
        conds = {"rgb": rgb.numpy(), "input_context": name}
        rec[f"pipe.out.pass{pid}"] = pipe(conds, {"rgb": "vae"}, output_type="pt", **kwargs).frames
        conds = {"rgb": rgb.numpy(), "input_context": name}
        rec[f"pipe.latent_out.pass{pid}"] = pipe(conds, {"rgb": "vae"}, output_type="latent", **kwargs).frames
    return rec


@torch.no_grad()
def record_forward(ref, folder: Path) -> dict:
    gen = torch.Generator().manual_seed(2)
    rec: dict = {}
    plain, lora = load_forward(ref, folder, False), load_forward(ref, folder, True)
    lat_hw = (HEIGHT // 2, WIDTH // 2)
    x = torch.randn(1, FRAMES, 24, *lat_hw, generator=gen)
    tokens = [torch.randn(1, FRAMES, n, WIDTH_CH, generator=gen) for n in (64, 16)]
    rec["unet.input"], rec["unet.timestep"] = x, torch.tensor(-1.25)
    for i, t in enumerate(tokens):
        rec[f"unet.tokens{i}"] = t
    rec["unet.out.plain"] = plain.unet(x, rec["unet.timestep"], tokens, added_time_ids=_time_ids(1),
                                       time_context=0).sample
    rec["unet.out.lora"] = lora.unet(x, rec["unet.timestep"], tokens, added_time_ids=_time_ids(1), time_context=0,
                                     cross_attention_kwargs={"scale": LORA_SCALE}).sample

    env_in = torch.randn(FRAMES, 12, ENV_SIZE // 2, ENV_SIZE // 2, generator=gen)
    rec["env_encoder.input"] = env_in
    for i, f in enumerate(plain.env_encoder(env_in)):
        rec[f"env_encoder.feature{i}"] = f

    img = torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=gen) * 2 - 1
    rec["vae.image"], rec["vae.latents"] = img, plain.vae.encode(img).latent_dist.mode()
    s = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen) * 700.0
    m = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen)
    rec["step.sample"], rec["step.model_out"] = s, m
    _one_step(plain.scheduler, s, m, rec, "step")

    conds = {}
    for key in FORWARD_CONDS:  # [0, 1] BFCHW, as the reference forward script passes them
        size = (ENV_SIZE, ENV_SIZE) if key.startswith("env_") else (HEIGHT, WIDTH)
        conds[key] = torch.rand(1, FRAMES, 3, *size, generator=gen)
        rec[f"pipe.cond.{key}"] = conds[key]
    noise = torch.randn(1, FRAMES, 4, *lat_hw, generator=gen)
    rec["pipe.latents"] = noise
    for tag, pipe in (("plain", plain), ("lora", lora)):
        for out_type in ("pt", "latent"):
            res = pipe(dict(conds), dict(FORWARD_CONDS), height=HEIGHT, width=WIDTH, num_frames=FRAMES,
                       num_inference_steps=2, min_guidance_scale=FORWARD_CFG, max_guidance_scale=FORWARD_CFG,
                       fps=7, motion_bucket_id=127, noise_aug_strength=0,
                       generator=torch.Generator().manual_seed(0), cross_attention_kwargs={"scale": LORA_SCALE},
                       dynamic_guidance=False, decode_chunk_size=DECODE_CHUNK, latents=noise.clone(),
                       output_type=out_type)
            rec[f"pipe.{'out' if out_type == 'pt' else 'latent_out'}.{tag}"] = res.frames
    return rec


@torch.no_grad()
def record_layouts(ref) -> dict:
    """State-dict layouts (key -> shape) of two variants the checkpoints above do not cover, and what the
    reference does when asked to run a context embedding of type "time"."""
    env = ref.EnvEncoder(in_channels=9, channels=(WIDTH_CH, WIDTH_CH), num_res_blocks=1, latent_encoder=False)
    cfg = _unet_kwargs(in_channels=8, cross_attention_dim=WIDTH_CH, temporal_cross_attention_dim=WIDTH_CH,
                       context_embedding_type="time")
    unet = ref.UNet(**cfg)
    try:
        unet(torch.zeros(1, FRAMES, 8, HEIGHT // 2, WIDTH // 2), torch.tensor(1.0), torch.zeros(1, 1, 1, WIDTH_CH),
             added_time_ids=_time_ids(1), input_context=torch.tensor([0]))
        time_run = "ran"
    except Exception as e:  # noqa: BLE001 -- recorded, not handled
        time_run = f"{type(e).__name__}: {e}"
    def public(config):  # diffusers' private entries (e.g. _use_default_values, a set) vary run to run
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}

    return {
        "env_encoder_pixel_stem": {"config": public(env.config),
                                   "state_dict": {k: list(v.shape) for k, v in env.state_dict().items()}},
        "unet_context_time": {"config": public(unet.config),
                              "state_dict": {k: list(v.shape) for k, v in unet.state_dict().items()},
                              "reference_forward_with_input_context": time_run},
    }


def _saved_tensor(folder: Path, key: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))[key].float()


def _save(rec: dict, path: Path) -> dict:
    from safetensors.torch import save_file

    tensors = {k: (torch.as_tensor(v) if not isinstance(v, np.ndarray) else torch.from_numpy(v)).float().contiguous()
               for k, v in rec.items()}
    save_file(tensors, str(path))
    return {k: list(v.shape) for k, v in tensors.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-repo", required=True, type=Path, help="checkout of nv-tlabs/diffusion-renderer")
    parser.add_argument("--reference-commit", default=None,
                        help="commit of the checkout, recorded when it has no git metadata (an archive export)")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/diffusion_renderer"))
    args = parser.parse_args(argv)
    out, repo = args.out.resolve(), args.reference_repo.resolve()
    if not (repo / "src" / "models" / "custom_unet_st.py").is_file():
        parser.error(f"{repo}: not a diffusion-renderer checkout (src/models/custom_unet_st.py missing)")
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the modules' default initialisation draws from the global generator
    ref = Reference(repo)
    for sub in ("inverse", "forward"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    build_checkpoints(out, ref)
    shapes = {"inverse": _save(record_inverse(ref, out / "inverse"), out / "reference_inverse.safetensors"),
              "forward": _save(record_forward(ref, out / "forward"), out / "reference_forward.safetensors")}
    import diffusers
    import peft
    import transformers

    def _commit():
        try:
            return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return args.reference_commit or "unknown (no git metadata in the checkout; pass --reference-commit)"

    provenance = {
        "made_by": "scripts/make_diffusion_renderer_fixtures.py (see its docstring)",
        "reference": {"repository": "github.com/nv-tlabs/diffusion-renderer", "commit": _commit()},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "python": sys.version.split()[0]},
        "settings": {"frames": FRAMES, "height": HEIGHT, "width": WIDTH, "env_size": ENV_SIZE,
                     "passes": list(PASSES), "forward_conds": FORWARD_CONDS, "lora_scale": LORA_SCALE,
                     "forward_cfg": FORWARD_CFG, "decode_chunk_size": DECODE_CHUNK, "steps": 2,
                     "fps": 7, "motion_bucket_id": 127, "noise_aug_strength": 0.0,
                     "weights_dtype": "float16 on disk, float32 in every computation"},
        "shapes": shapes,
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    (out / "layouts.json").write_text(json.dumps(record_layouts(ref), indent=0, default=list) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
