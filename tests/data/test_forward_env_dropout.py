"""ForwardClipDataset's env_dropout (Realiz3D stage 2 with real footage): the lighting condition goes missing on
synthetic samples too, so its absence alone does not tell the domain."""

import pytest
import torch

from neural_render.data.forward_data import ForwardClipDataset, ForwardDataModule
from neural_render.data_assets import envmap_path
from neural_render.demo.scene import demo_scene
from neural_render.errors import NeuralRenderError
from neural_render.io import Clip, ClipMeta, write_clip


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("env_dropout")
    scene = demo_scene(4, 16, 16)
    meta = ClipMeta.for_camera(scene.camera, envmap={"path": str(envmap_path("kiara_1_dawn").resolve()),
                                                     "rotation_deg": [0.0, 0.0, 0.0]})
    write_clip(root / "clip_0", Clip(torch.rand(1, 4, 3, 16, 16), scene.gbuffer, scene.camera, meta),
               preview_mp4=False)
    return root


def test_env_dropout_drops_the_env_and_the_prior(clip_root):
    kept = ForwardClipDataset(clip_root, num_frames=4, env_dropout=0.0)[0]
    dropped = ForwardClipDataset(clip_root, num_frames=4, env_dropout=1.0)[0]
    assert float(kept["env_present"].min()) == 1 and float(kept["prior_present"].min()) == 1
    assert float(dropped["env_present"].max()) == 0 and float(dropped["prior_present"].max()) == 0
    assert torch.equal(kept["rgb"], dropped["rgb"]) and torch.equal(kept["present"], dropped["present"])


def test_env_dropout_zero_keeps_the_random_stream(clip_root):
    plain = ForwardClipDataset(clip_root, num_frames=2, gbuffer_dropout=0.5, samples_per_clip=8)
    zero = ForwardClipDataset(clip_root, num_frames=2, gbuffer_dropout=0.5, samples_per_clip=8, env_dropout=0.0)
    for i in range(8):
        a, b = plain[i], zero[i]
        assert a["start"] == b["start"] and torch.equal(a["present"], b["present"])


def test_env_dropout_half_drops_some(clip_root):
    ds = ForwardClipDataset(clip_root, num_frames=2, samples_per_clip=40, env_dropout=0.5)
    dropped = sum(float(ds[i]["env_present"].max()) == 0 for i in range(len(ds)))
    assert 8 <= dropped <= 32


def test_datamodule_passes_it_to_the_synthetic_set_only(clip_root):
    dm = ForwardDataModule(str(clip_root), real_roots=str(clip_root), env_dropout=0.25, real_samples_per_clip=3)
    dm.setup()
    assert dm.train_sets[0].env_dropout == 0.25 and dm.train_sets[1].env_dropout == 0.0
    assert len(dm.train_sets[1]) == 3
    with pytest.raises(NeuralRenderError, match="env_dropout"):
        ForwardClipDataset(clip_root, env_dropout=1.5)
