"""`neural-render fit` (LightningCLI): every shipped config combination runs; config saving; export; bad input."""

import itertools
from pathlib import Path

import pytest
import torch
import yaml

from neural_render.cli import EXIT_BAD_INPUT, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BACKBONES = sorted(p.name for p in (CONFIGS / "backbone").glob("tiny_*.yaml"))
PRETRAINED = sorted(p.name for p in (CONFIGS / "backbone").glob("*.yaml") if not p.name.startswith("tiny_"))
TASKS = sorted(p.name for p in (CONFIGS / "task").glob("*.yaml"))
DATA = sorted(p.name for p in (CONFIGS / "data").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def configs(trainer="cpu_smoke.yaml", data="toy.yaml", backbone="tiny_wan.yaml", task="toy.yaml") -> list[str]:
    """Documented order: trainer, data, backbone, task (later files override earlier ones)."""
    return ["--config", str(CONFIGS / "trainer" / trainer), "--config", str(CONFIGS / "data" / data),
            "--config", str(CONFIGS / "backbone" / backbone), "--config", str(CONFIGS / "task" / task)]


def test_shipped_configs_are_found():
    assert {"tiny_wan.yaml", "tiny_svd.yaml"} <= set(BACKBONES)
    assert {"svd_xt.yaml", "wan21_t2v_1.3b.yaml"} <= set(PRETRAINED)
    assert {"toy.yaml", "toy_x0.yaml"} <= set(TASKS) and "toy.yaml" in DATA
    trainers = {p.name for p in (CONFIGS / "trainer").glob("*.yaml")}
    assert {"cpu_smoke.yaml", "ddp_cpu.yaml", "ddp_gpu.yaml", "fsdp.yaml"} <= trainers


TOY_TASKS = [t for t in TASKS if t.startswith("toy")]  # the other tasks' smoke runs live beside their tests


@pytest.mark.parametrize("backbone,task,data", list(itertools.product(BACKBONES, TOY_TASKS, ["toy.yaml"])))
def test_fast_dev_run_every_combination(tmp_path, backbone, task, data):
    args = ["fit", *configs(backbone=backbone, task=task, data=data), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 0


def test_task_config_overrides_denoiser_and_order_is_left_to_right(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs(task="toy_x0.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["denoiser"]["init_args"]["kind"] == "x0"
    assert printed["backbone"]["init_args"]["kind"] == "wan"
    assert printed["model"]["class_path"] == "neural_render.tasks.toy.ToyTask"


def test_per_pass_variant_keeps_the_joint_backbone_except_channel_counts(capsys):
    """configs/experiment/inverse_tiny_per_pass.yaml composed on inverse_tiny.yaml (scripts/compare_inverse_modes.py):
    a nested ``config`` dict replaces the base one, so a missing entry would silently shrink the per-pass network."""
    printed = {}
    for name, extra in (("joint", []), ("per_pass", ["inverse_tiny_per_pass.yaml"])):
        files = ["inverse_tiny.yaml", *extra]
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(CONFIGS / "trainer" / "cpu_train.yaml"),
                  *[a for f in files for a in ("--config", str(CONFIGS / "experiment" / f))], "--print_config"])
        assert exit_info.value.code == 0
        printed[name] = yaml.safe_load(capsys.readouterr().out)["backbone"]["init_args"]
    joint, per_pass = printed["joint"], printed["per_pass"]
    assert (joint["config"]["in_channels"], per_pass["config"]["in_channels"]) == (240, 48)
    channels = ("in_channels", "out_channels")
    assert {k: v for k, v in joint["config"].items() if k not in channels} == \
        {k: v for k, v in per_pass["config"].items() if k not in channels}
    assert {k: v for k, v in joint.items() if k != "config"} == {k: v for k, v in per_pass.items() if k != "config"}


def test_cpu_smoke_saves_config_next_to_checkpoints_and_exports(tmp_path):
    root, export_dir = tmp_path / "run", tmp_path / "exported"
    assert main(["fit", *configs(), "--trainer.default_root_dir", str(root), "--export_dir", str(export_dir)]) == 0
    (log_dir,) = (root / "lightning_logs").iterdir()
    saved = yaml.safe_load((log_dir / "config.yaml").read_text())
    assert saved["backbone"]["class_path"] == "neural_render.tasks.base.make_backbone"
    assert saved["model"]["init_args"]["lr"] == pytest.approx(2e-3) and saved["trainer"]["max_steps"] == 4
    (ckpt,) = (log_dir / "checkpoints").glob("*.ckpt")
    checkpoint = torch.load(ckpt, weights_only=False)
    assert checkpoint["global_step"] == 4 and checkpoint["ema"]["num_updates"] == 4
    assert yaml.safe_load(checkpoint["run_config"])["denoiser"]["init_args"]["kind"] == "flow"
    # the exported pipeline loads and carries the run config
    from neural_render.pipelines.base import load_pipeline

    pipe = load_pipeline(export_dir)
    assert yaml.safe_load(pipe.run_config)["codec"]["init_args"]["factor"] == 2
    out = pipe(torch.zeros(1, 4, 3, 16, 16), num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 4, 3, 16, 16) and torch.isfinite(out.frames).all()
    # the saved config alone reproduces the run (it is complete), and resuming from the checkpoint works
    again = tmp_path / "again"
    assert main(["fit", "--config", str(log_dir / "config.yaml"), "--trainer.default_root_dir", str(again),
                 "--trainer.max_steps", "6", "--ckpt_path", str(ckpt)]) == 0
    (log_dir2,) = (again / "lightning_logs").iterdir()
    (ckpt2,) = (log_dir2 / "checkpoints").glob("*.ckpt")
    assert torch.load(ckpt2, weights_only=False)["global_step"] == 6


@pytest.mark.parametrize("trainer", ["ddp_gpu.yaml", "fsdp.yaml", "ddp_cpu.yaml"])
def test_scale_out_trainer_configs_parse(trainer, capsys):
    """GPU configs cannot run here; they must at least parse into a complete config with their strategy."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs(trainer=trainer), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    strategy = printed["trainer"]["strategy"]["class_path"]
    assert strategy.endswith("FSDPStrategy" if trainer == "fsdp.yaml" else "DDPStrategy")


def test_bad_input_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tmp_path / "missing.yaml")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs(), "--model.init_args.no_such_option", "1"])
    assert exit_info.value.code == 2
    # a value that parses but is rejected by the library: NeuralRenderError -> exit 2 with the reason
    code = main(["fit", *configs(), "--backbone.init_args.kind", "unet3000",
                 "--trainer.default_root_dir", str(tmp_path)])
    assert code == EXIT_BAD_INPUT
    assert "unet3000" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", PRETRAINED)
def test_pretrained_backbone_configs_parse_and_fail_clearly_without_weights(tmp_path, backbone, capsys):
    """Real backbones load from a local folder only: no weights here, so the run must stop with exit 2 naming it."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs(backbone=backbone), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["backbone"]["init_args"]["pretrained_dir"] and printed["codec"]["init_args"]["pretrained_dir"]
    missing = tmp_path / "no_weights_here"
    code = main(["fit", *configs(backbone=backbone), "--trainer.fast_dev_run", "true",
                 "--trainer.default_root_dir", str(tmp_path), "--backbone.init_args.pretrained_dir", str(missing),
                 "--codec.init_args.pretrained_dir", str(missing)])
    assert code == EXIT_BAD_INPUT
    assert "no_weights_here" in capsys.readouterr().err


EXPERIMENT_VARIANTS = sorted(p.name for p in (CONFIGS / "experiment").glob("inverse_tiny_*.yaml"))


@pytest.mark.parametrize("variant", [None, *EXPERIMENT_VARIANTS])
def test_inverse_experiment_configs_fast_dev_run(tiny_synth, tmp_path, variant):
    """configs/experiment/inverse_tiny.yaml (the shipped recipe) and every variant composed after it train one
    fast_dev_run step on a tiny synth set and export."""
    files = [CONFIGS / "trainer" / "cpu_smoke.yaml", CONFIGS / "experiment" / "inverse_tiny.yaml"]
    files += [CONFIGS / "experiment" / variant] if variant else []
    args = ["fit", *(a for f in files for a in ("--config", str(f))), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.train_dir", str(tiny_synth),
            "--data.init_args.batch_size", "1", "--export_dir", str(tmp_path / "model")]
    assert main(args) == 0
    assert (tmp_path / "model" / "model_index.json").is_file()
