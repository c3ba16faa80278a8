"""DiffusionSystem: warmup schedule, EMA (update rule, validation swap, checkpoints), trainable selection, export."""

import json

import lightning.pytorch as pl
import pytest
import torch

from neural_render.data.toy import TOY_COLOR_MATRIX, ToyDataModule, toy_target
from neural_render.errors import NeuralRenderError
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.models.pass_embedding import PassEmbedding
from neural_render.pipelines.base import VideoDiffusionPipeline, export, load_pipeline
from neural_render.tasks.base import DiffusionSystem, LinearWarmup, make_backbone
from neural_render.tasks.toy import ToyTask

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def wan(**kw):
    return make_backbone("wan", config={"in_channels": 12, "out_channels": 12, "patch_size": (1, 1, 1)}, tiny=True,
                         cond_channels=12, seed=0, **kw)


def toy(backbone=None, kind="flow", **kw):
    return ToyTask(backbone or wan(), Denoiser(kind), PixelUnshuffleCodec(2), **kw)


def data(**kw):
    args = dict(num_clips=2, num_val_clips=2, frames=4, height=8, width=8, batch_size=2, seed=0)
    args.update(kw)
    return ToyDataModule(**args)


def trainer(steps, callbacks=(), **kw):
    args = dict(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=list(callbacks))
    args.update(kw)
    return pl.Trainer(**args)


class Spy(pl.Callback):
    """Records LR before each step, trainable weights after each step, and EMA/live state during validation."""

    def __init__(self):
        self.lrs, self.after_step, self.val_checks = [], [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after_step.append({n: p.detach().clone() for n, p in module.trainable_named_parameters()})

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self.val_checks.append(all(torch.equal(p, module.ema.shadow[n])
                                   for n, p in module.trainable_named_parameters()))


def test_toy_data_is_the_documented_transform():
    dm = data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    m = torch.tensor(TOY_COLOR_MATRIX)
    assert torch.allclose(batch["target"][0, 1, :, 3, 5], m @ batch["input"][0, 1, :, 3, 5])
    assert torch.equal(batch["target"], toy_target(batch["input"])) and batch["input"].abs().max() <= 1
    assert not torch.equal(batch["input"][:, 0], batch["input"][:, 1])  # it moves


def test_linear_warmup_schedule_in_training():
    spy = Spy()
    trainer(7, [spy]).fit(toy(lr=1e-3, warmup_steps=4, ema_decay=None), datamodule=data())
    assert spy.lrs == pytest.approx([1e-3 * min(1.0, (k + 1) / 4) for k in range(7)])
    assert LinearWarmup(0)(0) == 1.0


def test_ema_follows_the_update_rule_and_validation_uses_it():
    spy = Spy()
    system = toy(lr=1e-3, ema_decay=0.8, ema_warmup=False)
    initial = {n: p.detach().clone() for n, p in system.trainable_named_parameters()}
    trainer(5, [spy], limit_val_batches=1, num_sanity_val_steps=0, check_val_every_n_epoch=1).fit(
        system, datamodule=data(num_clips=2, batch_size=1))
    expected = dict(initial)
    for weights in spy.after_step:
        expected = {n: 0.8 * expected[n] + 0.2 * weights[n] for n in expected}
    for n, value in expected.items():
        assert torch.allclose(system.ema.shadow[n], value, atol=1e-6), n
    assert system.ema.num_updates == 5
    # validation ran with the EMA weights swapped in, and the live weights came back afterwards
    assert spy.val_checks and all(spy.val_checks)
    for n, p in system.trainable_named_parameters():
        assert torch.equal(p, spy.after_step[-1][n])
    assert any(not torch.equal(system.ema.shadow[n], spy.after_step[-1][n]) for n in expected)


def test_ema_is_saved_in_checkpoints_and_restored(tmp_path):
    system = toy(lr=1e-3, ema_decay=0.9)
    t = trainer(3)
    t.fit(system, datamodule=data())
    path = tmp_path / "run.ckpt"
    t.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["ema"]["num_updates"] == 3
    fresh = toy(lr=1e-3, ema_decay=0.9)
    fresh.load_state_dict(checkpoint["state_dict"])
    fresh.on_load_checkpoint(checkpoint)
    for n in system.ema.shadow:
        assert torch.equal(fresh.ema.shadow[n], system.ema.shadow[n])
    # resuming keeps counting
    resumed = toy(lr=1e-3, ema_decay=0.9)
    trainer(5).fit(resumed, datamodule=data(), ckpt_path=path)
    assert resumed.ema.num_updates == 5


def test_trainable_selection_freezes_everything_else():
    system = toy(trainable=["backbone.transformer.proj_out.*"], ema_decay=None, lr=1e-2)
    names = [n for n, _ in system.trainable_named_parameters()]
    assert names == ["backbone.transformer.proj_out.weight", "backbone.transformer.proj_out.bias"]
    before = {n: p.detach().clone() for n, p in system.named_parameters()}
    trainer(2).fit(system, datamodule=data())
    for n, p in system.named_parameters():
        assert torch.equal(p, before[n]) != (n in names), n
    with pytest.raises(NeuralRenderError, match="match no parameter"):
        toy(trainable=["backbone.no_such_layer.*"])


def test_lora_backbone_trains_only_lora_by_default():
    system = toy(wan(lora_rank=4), ema_decay=None)
    names = [n for n, _ in system.trainable_named_parameters()]
    assert names and all("lora_" in n for n in names)
    assert all(not p.requires_grad for n, p in system.named_parameters() if "lora_" not in n)


def test_make_batch_contract():
    with pytest.raises(NotImplementedError):
        DiffusionSystem(wan(), Denoiser("flow"), PixelUnshuffleCodec(2)).make_batch({})

    class BadMasks(ToyTask):
        def make_batch(self, batch):
            x0, cond, context, _ = super().make_batch(batch)
            return x0, cond, context, {"weights": None}

    dm = data()
    dm.setup()
    with pytest.raises(NeuralRenderError, match="unknown mask keys"):
        BadMasks(wan(), Denoiser("flow"), PixelUnshuffleCodec(2)).training_step(next(iter(dm.train_dataloader())), 0)


def test_clean_first_frames_and_condition_dropout_reach_the_backbone():
    seen = []
    system = toy(clean_first_frames=1, cond_dropout=1.0, ema_decay=None)
    system.backbone.register_forward_pre_hook(lambda m, args: seen.append(args))
    dm = data()
    dm.setup()
    loss = system.training_step(next(iter(dm.train_dataloader())), 0)
    assert torch.isfinite(loss)
    noisy, timestep, cond = seen[0][:3]
    assert timestep.shape == (2, 4) and torch.all(timestep[:, 0] == 0) and torch.all(timestep[:, 1:] > 0)
    assert torch.all(cond == 0)  # dropped with probability 1


@pytest.mark.parametrize("backbone_kind", ["wan", "svd"])
def test_export_and_load_round_trip_is_identical(tmp_path, backbone_kind):
    if backbone_kind == "wan":
        backbone, kind = wan(lora_rank=4), "flow"
        embedding = PassEmbedding(names=["target"], num_tokens=2, dim=32)
        embedding.reset_parameters(torch.Generator().manual_seed(0))
    else:
        backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, cond_channels=12,
                                 seed=0)
        kind, embedding = "edm", None
    system = ToyTask(backbone, Denoiser(kind), PixelUnshuffleCodec(2), pass_embedding=embedding, lr=1e-2,
                     ema_decay=0.5, trainable=None)
    trainer(3).fit(system, datamodule=data())
    system.run_config = "model: {}\n"
    export(system, tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    has_lora = index["lora"][1] is not None  # diffusers format: [library, class] or [null, null]
    assert has_lora == (backbone_kind == "wan") and (tmp_path / "pipe" / "lora" / "default").is_dir() == has_lora
    pipe = load_pipeline(tmp_path / "pipe")
    assert isinstance(pipe, VideoDiffusionPipeline) and pipe.run_config == "model: {}\n"
    cond_video = toy_target(torch.rand(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    ids = [0] if embedding is not None else None
    system.eval()
    with system.ema_weights():
        want = system.pipeline()(cond_video, pass_ids=ids, num_steps=3, guidance_scale=2.0,
                                 generator=torch.Generator().manual_seed(7))
        ema_state = {n: p.detach().clone() for n, p in system.trainable_named_parameters()}
    got = pipe(cond_video, pass_ids=ids, num_steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(got.latents, want.latents) and torch.equal(got.frames, want.frames)
    assert got.frames.shape == (1, 4, 3, 8, 8)
    if backbone_kind == "wan":  # the trained LoRA travelled with the export (B matrices start at zero)
        lora_b = [p for n, p in pipe.backbone.named_parameters() if "lora_B" in n]
        assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    # the export holds the EMA weights, not the live ones
    live = pipe.backbone.state_dict()
    for n, value in ema_state.items():
        if n.startswith("backbone."):
            assert torch.equal(live[n[len("backbone."):]], value), n
    with pytest.raises(NeuralRenderError, match="model folder does not exist"):
        load_pipeline(tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralRenderError, match="model_index.json"):
        load_pipeline(tmp_path / "empty")
