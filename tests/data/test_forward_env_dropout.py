"""ForwardClipDataset's env_dropout (Realiz3D stage 2 with real footage): the lighting condition goes missing on
synthetic samples too, so its absence alone does not tell the domain."""

import pytest
import torch

from neural_render.data.forward_data import ForwardClipDataset, ForwardDataModule
from neural_render.errors import NeuralRenderError


@pytest.fixture(scope="module")
def clip_root(tiny_synth):
    """One synthetic clip with its env map (tests/conftest.py's tiny_synth: 4 frames of 16x16)."""
    return sorted(p for p in tiny_synth.iterdir() if (p / "meta.json").is_file())[0]


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
