"""DiffusionRenderer pass/task embedding: ids -> context tokens, names, save/load, errors."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.pass_embedding import DEFAULT_PASSES, PassEmbedding


def test_ids_to_tokens():
    emb = PassEmbedding(num_tokens=3, dim=8)
    assert emb.names == list(DEFAULT_PASSES)
    ids = emb.ids(["normal", "basecolor", "normal"])
    assert ids.tolist() == [1, 0, 1] and ids.dtype == torch.long
    tokens = emb(ids)
    assert tokens.shape == (3, 3, 8)
    assert torch.equal(tokens[0], tokens[2]) and not torch.equal(tokens[0], tokens[1])
    assert torch.equal(emb.embed("depth")[0], emb.tokens[2])
    tokens.sum().backward()
    assert emb.tokens.grad[1].abs().sum() > 0 and emb.tokens.grad[3].abs().sum() == 0


def test_errors():
    emb = PassEmbedding(names=["a", "b"], dim=4)
    with pytest.raises(NeuralRenderError, match="unknown pass"):
        emb.ids("c")
    with pytest.raises(NeuralRenderError, match="out of range"):
        emb(torch.tensor([2]))
    with pytest.raises(NeuralRenderError, match="integer"):
        emb(torch.tensor([0.0]))
    with pytest.raises(NeuralRenderError, match="unique"):
        PassEmbedding(names=["a", "a"])


def test_save_load_round_trip(tmp_path):
    emb = PassEmbedding(names=["basecolor", "normal"], num_tokens=2, dim=32)
    emb.reset_parameters(torch.Generator().manual_seed(3))
    emb.save_pretrained(tmp_path / "pass")
    assert (tmp_path / "pass" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = PassEmbedding.from_pretrained(tmp_path / "pass")
    assert loaded.names == ["basecolor", "normal"]
    ids = torch.tensor([1, 0])
    assert torch.equal(loaded(ids), emb(ids))
    with pytest.raises(NeuralRenderError, match="no config.json"):
        PassEmbedding.from_pretrained(tmp_path / "nope")


@torch.no_grad()
def test_feeds_backbone_context():
    from neural_render.models.backbone import build_backbone

    bb = build_backbone("wan", tiny=True, seed=0)
    emb = PassEmbedding(num_tokens=2, dim=bb.context_dim)
    emb.reset_parameters(torch.Generator().manual_seed(0))
    noisy = torch.randn(2, 2, 4, 16, 16)
    a = bb(noisy, torch.tensor([500.0, 500.0]), context=emb.embed(["normal", "normal"]))
    b = bb(noisy, torch.tensor([500.0, 500.0]), context=emb.embed(["normal", "depth"]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
