"""Smoke fit of every forward config through `neural-render fit` (LightningCLI): plain, pure (no prior), Realiz3D
stage 1 (shifters only) then stage 2 (backbone only, shifters loaded from the stage-1 export)."""

import json
from pathlib import Path

import pytest
import torch

from neural_render.data_assets import envmap_path
from neural_render.demo.scene import demo_scene
from neural_render.io import Clip, ClipMeta, write_clip
from neural_render.pipelines.forward import ForwardPipeline
from neural_render.tasks.fit_cli import build_cli

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("forward_config_data")
    scene = demo_scene(4, 16, 16)
    meta = ClipMeta.for_camera(scene.camera, envmap={"path": str(envmap_path("kiara_1_dawn").resolve()),
                                                     "rotation_deg": [10.0, 0.0, 0.0]})
    rgb = torch.rand(1, 4, 3, 16, 16)
    write_clip(root / "synthetic" / "clip_0", Clip(rgb, scene.gbuffer, scene.camera, meta), preview_mp4=False)
    real_meta = ClipMeta.for_camera(scene.camera)  # a "real" clip: rgb + (auto-labelled) passes, no env map
    write_clip(root / "real" / "clip_0", Clip(rgb, scene.gbuffer, scene.camera, real_meta), preview_mp4=False)
    return root


def fit(configs, data, tmp_path, name, extra=()):
    argv = [a for c in configs for a in ("--config", str(ROOT / c))] + [
        "--data.init_args.train_roots", str(data / "synthetic"), "--data.init_args.batch_size", "2",
        "--data.init_args.samples_per_clip", "2",
        "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / name),
        "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--export_dir", str(tmp_path / name / "export"), *extra]
    cli = build_cli(argv)
    before = {n: p.detach().clone() for n, p in cli.model.named_parameters()}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.model.export(tmp_path / name / "export")
    changed = {n for n, p in cli.model.named_parameters() if not torch.equal(before[n], p)}
    return cli.model, changed


BASE = ["configs/trainer/cpu_smoke.yaml", "configs/data/synth_forward.yaml", "configs/task/forward.yaml"]


def test_plain_and_pure_configs(data, tmp_path):
    model, changed = fit(BASE, data, tmp_path, "plain")
    assert model.with_prior and model.residual and changed
    assert float(model.backbone.unet.conv_out.weight.abs().sum()) > 0  # zero-init output layer got trained
    pipe = ForwardPipeline.from_pretrained(tmp_path / "plain" / "export")
    assert pipe.forward_config["info"]["global_step"] == 2
    model, changed = fit(BASE + ["configs/task/forward_pure.yaml"], data, tmp_path, "pure")
    assert not model.with_prior and model.backbone.cond_channels == 389 and changed


def test_realiz3d_stage_configs(data, tmp_path):
    real = ["--data.init_args.real_roots", str(data / "real")]
    stage1, changed = fit(BASE[:1] + ["configs/data/synth_forward_real.yaml"] + BASE[2:] +
                          ["configs/task/forward_stage1.yaml"], data, tmp_path, "stage1", real)
    assert changed and all(n.startswith("domain_shifters.") for n in changed)
    export = tmp_path / "stage1" / "export"
    assert json.loads((export / "forward_config.json").read_text())["stage"] == "shifters"
    stage2, changed = fit(BASE[:1] + ["configs/data/synth_forward_real.yaml"] + BASE[2:] +
                          ["configs/task/forward_stage2.yaml"], data, tmp_path, "stage2", real + [
        "--backbone.init_args.tiny", "false", "--backbone.init_args.config", "null",
        "--backbone.init_args.seed", "null",
        "--backbone.init_args.pretrained_dir", str(export / "backbone"),
        "--model.init_args.domain_shifter", json.dumps({"pretrained": str(export / "domain_shifters")})])
    assert changed and all(n.startswith("backbone.") for n in changed)
    loaded = ForwardPipeline.from_pretrained(tmp_path / "stage2" / "export")
    assert loaded.domain_shifters is not None


def test_real_footage_configs(data, tmp_path):
    """scripts/train_forward_real.py's recipes (issue #26) from the shipped plain model: stage 1 trains only the
    shifters, stage 2 only the backbone (real samples keep G-buffers half of the time), the real LoRA only LoRA."""
    stage1_configs = ["configs/trainer/cpu_smoke.yaml", "configs/data/synth_forward_real.yaml",
                      "configs/task/forward.yaml", "configs/task/forward_stage1.yaml",
                      "configs/experiment/forward_real.yaml"]
    real = ["--data.init_args.real_roots", str(data / "real"), "--data.init_args.real_samples_per_clip", "3"]
    stage1, changed = fit(stage1_configs, data, tmp_path, "real1", real)
    assert changed and all(n.startswith("domain_shifters.") for n in changed)
    assert len(stage1.trainer.datamodule.train_sets[1]) == 3  # one real clip, 3 windows per epoch
    export = tmp_path / "real1" / "export"
    stage2_configs = stage1_configs[:3] + ["configs/task/forward_stage2.yaml", "configs/experiment/forward_real.yaml",
                                           "configs/experiment/forward_real_stage2.yaml"]
    stage2, changed = fit(stage2_configs, data, tmp_path, "real2",
                          real + ["--backbone.init_args.pretrained_dir", str(export / "backbone"),
                                  "--model.init_args.domain_shifter.pretrained", str(export / "domain_shifters")])
    assert changed and all(n.startswith("backbone.") for n in changed)
    assert stage2.hparams.real_cond_dropout == 0.5
    lora_configs = ["configs/trainer/cpu_smoke.yaml", "configs/data/synth_forward.yaml", "configs/task/forward.yaml",
                    "configs/experiment/forward_real_lora.yaml"]
    lora, changed = fit(lora_configs, data, tmp_path, "lora",
                        ["--data.init_args.train_roots", str(data / "real")])
    assert changed and all("lora_" in n for n in changed)
    assert (tmp_path / "lora" / "export" / "lora").is_dir()
