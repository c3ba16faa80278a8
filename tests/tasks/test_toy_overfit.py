"""The training loop learns: a tiny config overfits one fixed 4-frame batch (loss falls >= 10x) on CPU.

Real tiny backbones from neural_render.models.backbone (Wan transformer, SVD UNet; random init, fixed seeds),
pixel-unshuffle codec, Lightning Trainer. The loss is measured before and after training with the SAME fixed
noise draws and noise levels (averaged over 8 draws), so the ratio is not luck of the sampled timesteps.
"""

import lightning.pytorch as pl
import pytest
import torch

from neural_render.data.toy import ToyDataModule
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.tasks.base import make_backbone
from neural_render.tasks.toy import ToyTask

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_system(backbone: str, kind: str, lr: float) -> ToyTask:
    config = {"in_channels": 12, "out_channels": 12}
    if backbone == "wan":
        config["patch_size"] = (1, 1, 1)
    net = make_backbone(backbone, config=config, tiny=True, cond_channels=12, seed=0)
    return ToyTask(net, Denoiser(kind, shift=3.0), PixelUnshuffleCodec(2), lr=lr, weight_decay=0.0, warmup_steps=10,
                   ema_decay=None)


def fixed_noise_loss(system: ToyTask, batch: dict, draws: int = 8) -> float:
    x0, cond, context, masks = system.make_batch(batch)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        return sum(float(system.denoiser.loss(system.backbone, x0, cond, context, generator=g, **masks))
                   for _ in range(draws)) / draws


@pytest.mark.parametrize("backbone,kind,steps,lr", [
    ("wan", "flow", 300, 2e-3),   # rectified flow, v-prediction
    ("wan", "x0", 100, 1e-3),     # single-step x0 regression
    ("svd", "x0", 60, 1e-3),      # the SVD UNet (slower per step)
])
def test_tiny_config_overfits_a_fixed_batch(backbone, kind, steps, lr):
    data = ToyDataModule(num_clips=1, num_val_clips=1, frames=4, height=16, width=16, batch_size=1, seed=0)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["input"].shape == (1, 4, 3, 16, 16)
    system = tiny_system(backbone, kind, lr)
    before = fixed_noise_loss(system, batch)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(system, datamodule=data)
    after = fixed_noise_loss(system, batch)
    print(f"{backbone}/{kind}: loss {before:.4f} -> {after:.5f} ({before / after:.1f}x in {steps} steps)")
    assert after * 10 <= before
