"""Fine-tuning DiffusionRenderer checkpoints (issue #24 B.2): `neural-render fit` with the tiny CPU config trains the
tiny fixture checkpoints, exports the DiffusionRenderer layout, and the export reloads: its output differs from
the original (it trained) while what did not train is bit-identical (files and reloaded tensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neural_render.cli import main
from neural_render.errors import NeuralRenderError
from neural_render.models.diffusion_renderer.checkpoint import load_diffusion_renderer
from neural_render.models.diffusion_renderer.lora import base_state_dict, read_lora
from neural_render.pipelines.diffusion_renderer import DiffusionRendererPipeline, load_for_command

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "diffusion_renderer"
CONFIGS = ROOT / "configs"
WEIGHTS = "diffusion_pytorch_model.safetensors"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clips(tmp_path_factory, write_demo_clips) -> Path:
    """Two clip folders of the analytic demo scene (exact G-buffers), 6, 7, ... frames of 16x16 (tests/conftest.py)."""
    return write_demo_clips(tmp_path_factory.mktemp("dr_clips"), 2)


def _fit(tmp_path: Path, data: Path, *extra: str) -> Path:
    out = tmp_path / "export"
    argv = ["fit", "--config", str(CONFIGS / "trainer" / "cpu_smoke.yaml"),
            "--config", str(CONFIGS / "experiment" / "diffusion_renderer_tiny.yaml"),
            "--backbone.init_args.folder", str(FIXTURES / "inverse"), "--data.init_args.train_dir", str(data),
            "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--export_dir", str(out), *extra]
    assert main(argv) == 0
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def _render(folder: Path) -> torch.Tensor:
    """One Euler step of the whole sampler from fixed noise and inputs (3 frames, 16x32)."""
    pipe = DiffusionRendererPipeline.from_diffusion_renderer(folder)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, 4, 8, 16, generator=gen)
    if pipe.settings.kind == "inverse":
        return pipe(video=torch.rand(1, 3, 3, 16, 32, generator=gen), passes="normal", num_inference_steps=1,
                    latents=noise, output_type="latent").frames
    g = {k: torch.rand(1, 3, 3, 16, 32, generator=gen) for k in pipe.settings.gbuffers}
    e = {k: torch.rand(1, 3, 3, 16, 16, generator=gen) for k in pipe.settings.env_labels}
    return pipe(gbuffers=g, env=e, num_inference_steps=1, latents=noise, output_type="latent").frames


def test_fit_tiny_inverse_lora_exports_a_folder_that_reloads(tmp_path, clips):
    src = FIXTURES / "inverse"
    out = _fit(tmp_path, clips)
    for name in ("model_index.json", "unet/config.json", f"unet/{WEIGHTS}", "vae/config.json", f"vae/{WEIGHTS}",
                 "scheduler/scheduler_config.json"):
        assert _same_bytes(src / name, out / name), name  # untrained parts and the base UNet: byte for byte
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
    original, tuned = load_diffusion_renderer(src), load_diffusion_renderer(out)
    assert tuned.lora_layers > 0 and tuned.settings.lora_scale == 0.25 and original.lora_layers == 0
    base, tuned_base = original.unet.state_dict(), base_state_dict(tuned.unet)
    assert set(base) == set(tuned_base) and all(torch.equal(base[k], tuned_base[k]) for k in base)
    assert torch.equal(_render(src), _render(src))  # deterministic: any difference below is the training
    assert float((_render(out) - _render(src)).abs().max()) > 1e-5
    pipe = load_for_command(out, "inverse")
    assert pipe.info["training"]["global_step"] == 2 and pipe.info["training"]["mode"] == "lora"


def test_fit_tiny_forward_lora_trains_the_folders_own_lora(tmp_path, tiny_synth):
    src = FIXTURES / "forward"
    out = _fit(tmp_path, tiny_synth, "--backbone.init_args.folder", str(src), "--backbone.init_args.lora_rank", "null",
               "--data.init_args.kind", "forward", "--model.init_args.uncond_prob", "0.5")
    for name in (f"unet/{WEIGHTS}", f"vae/{WEIGHTS}", f"env_encoder/{WEIGHTS}", "env_encoder/config.json"):
        assert _same_bytes(src / name, out / name), name
    before, after = (read_lora(f / "lora" / "pytorch_lora_weights.safetensors") for f in (src, out))
    assert set(before) == set(after)  # the same layers and ranks, trained further
    assert any(not torch.equal(before[k]["lora_B"].float(), after[k]["lora_B"].float()) for k in before)
    assert float((_render(out) - _render(src)).abs().max()) > 1e-5
    assert load_for_command(out, "forward").info["training"]["kind"] == "forward"


def test_full_fine_tune_changes_the_unet_and_copies_the_vae(tmp_path, clips):
    src = FIXTURES / "inverse"
    out = _fit(tmp_path, clips, "--backbone.init_args.mode", "full")
    assert _same_bytes(src / f"vae/{WEIGHTS}", out / f"vae/{WEIGHTS}") and not (out / "lora").exists()
    assert _same_bytes(src / "unet/config.json", out / "unet/config.json")
    original, tuned = load_diffusion_renderer(src).unet.state_dict(), load_diffusion_renderer(out).unet.state_dict()
    assert set(original) == set(tuned) and any(not torch.equal(original[k], tuned[k]) for k in original)
    assert float((_render(out) - _render(src)).abs().max()) > 1e-5


def test_gradient_checkpointing_keeps_the_gradients():
    """The forward UNet's per-level env tokens reach its blocks through hooks; recomputation must see them too.
    (diffusers 0.42 recomputes only the resnets of the SVD blocks, which take no tokens; the test guards the
    gradients against a diffusers that recomputes whole blocks.)"""
    from neural_render.tasks.diffusion_renderer import make_backbone

    grads = []
    for checkpointing in (False, True):
        backbone = make_backbone(str(FIXTURES / "forward"), mode="full", gradient_checkpointing=checkpointing)
        gen = torch.Generator().manual_seed(3)
        noisy, cond = torch.randn(1, 3, 4, 8, 16, generator=gen), torch.randn(1, 3, 20, 8, 16, generator=gen)
        tokens = [torch.randn(1, 3, 32, 32, generator=gen), torch.randn(1, 3, 8, 32, generator=gen)]
        assert backbone.unet.is_gradient_checkpointing == checkpointing
        out = backbone(noisy, torch.tensor([0.3]), cond, None, {"env_tokens": tokens})
        out.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) > 50
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("config,kind,mode", [("diffusion_renderer_inverse_lora", "inverse", "lora"),
                                              ("diffusion_renderer_forward_lora", "forward", "lora"),
                                              ("diffusion_renderer_inverse_full", "inverse", "full")])
def test_gpu_configs_build_with_bf16_and_checkpointing(tmp_path, clips, tiny_synth, config, kind, mode):
    from neural_render.tasks.diffusion_renderer import DiffusionRendererTask
    from neural_render.tasks.fit_cli import build_cli

    cli = build_cli(["--config", str(CONFIGS / "trainer" / "cpu_smoke.yaml"),
                     "--config", str(CONFIGS / "task" / f"{config}.yaml"),
                     "--backbone.init_args.folder", str(FIXTURES / kind),
                     "--data.init_args.train_dir", str(tiny_synth if kind == "forward" else clips),
                     "--data.init_args.size", "[16, 16]", "--data.init_args.num_frames", "4",
                     "--data.init_args.num_workers", "0", "--trainer.default_root_dir", str(tmp_path)])
    model = cli.model
    assert isinstance(model, DiffusionRendererTask) and model.backbone.dr_source.mode == mode
    assert model.backbone.autocast_dtype == torch.bfloat16 and model.backbone.unet.is_gradient_checkpointing
    lora = [n for n in model.trainable_names if ".lora_" in n]
    assert (len(lora) == len(model.trainable_names)) == (mode == "lora") and model.trainable_names


def test_bad_settings_are_refused():
    from neural_render.tasks.diffusion_renderer import make_backbone

    with pytest.raises(NeuralRenderError, match="mode must be one of"):
        make_backbone(str(FIXTURES / "inverse"), mode="half")
    with pytest.raises(NeuralRenderError, match="the folder's LoRA has rank"):
        make_backbone(str(FIXTURES / "forward"), lora_rank=8)
