"""Inverse training end to end: InverseDataModule over clip folders, and `neural-render fit` with the shipped
inverse configs (per-pass and joint; tiny Wan and tiny SVD) -> exported pipeline that runs."""

from pathlib import Path

import pytest
import torch

from neural_render.cli import main
from neural_render.data.inverse_data import InverseDataModule, collate_inverse
from neural_render.errors import NeuralRenderError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clips(tmp_path_factory, write_demo_clips) -> Path:
    """Three clip folders of the analytic demo scene (exact G-buffers), 6, 7, 8 frames of 16x16 (conftest.py)."""
    return write_demo_clips(tmp_path_factory.mktemp("inverse_clips"), 3)


def test_datamodule_batches(clips):
    dm = InverseDataModule(str(clips), val_dir=str(clips), num_frames=4, crop=12, size=8, batch_size=2, seed=1)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["rgb"].shape == (2, 4, 3, 8, 8) and batch["start"].shape == (2,) and len(batch["clip"]) == 2
    assert set(batch["gbuffer"].passes) == {"basecolor", "normal", "depth", "roughness", "metallic", "mask"}
    assert batch["gbuffer"].validate() is batch["gbuffer"]
    val = next(iter(dm.val_dataloader()))
    assert val["start"].tolist() == [0, 0]  # first window of each clip
    assert InverseDataModule(str(clips)).val_dataloader() == []
    with pytest.raises(NeuralRenderError):
        collate_inverse([])
    with pytest.raises(NeuralRenderError):
        InverseDataModule(str(clips), crop=[1, 2, 3])


@pytest.mark.parametrize("backbone,task", [("tiny_wan.yaml", "inverse.yaml"), ("tiny_wan.yaml", "inverse_joint.yaml"),
                                           ("tiny_svd.yaml", "inverse.yaml")])
def test_fit_with_shipped_configs_exports_a_working_pipeline(tmp_path, clips, backbone, task):
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    argv = ["fit"]
    for name in ("trainer/cpu_smoke.yaml", "data/synth_inverse.yaml", f"backbone/{backbone}", f"task/{task}"):
        argv += ["--config", str(CONFIGS / name)]
    argv += ["--data.init_args.train_dir", str(clips), "--data.init_args.val_dir", str(clips),
             "--data.init_args.num_frames", "4", "--data.init_args.batch_size", "2", "--trainer.max_steps", "2",
             "--trainer.default_root_dir", str(tmp_path / "run"), "--export_dir", str(tmp_path / "model")]
    assert main(argv) == 0
    pipe = InverseRenderingPipeline.from_pretrained(tmp_path / "model")
    assert pipe.mode == ("joint" if "joint" in task else "per_pass") and pipe.is_trained
    assert pipe.info["global_step"] == 2
    out = pipe(torch.rand(1, 3, 3, 12, 10), num_steps=2, progress=False)
    assert out.gbuffer.normal.shape == (1, 3, 3, 12, 10) and out.gbuffer.mask is not None
