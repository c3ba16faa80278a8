"""Realiz3D domain shifters: zero-init is bit-identical, domains differ only after training, layer-aware freezing,
reassignment, persistence."""

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.domain_shifter import (
    REAL,
    SYNTHETIC,
    DomainShifters,
    backbone_blocks,
    domain_ids,
    reassign_early_blocks,
)
from neural_render.tasks.base import make_backbone

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def backbone(kind):
    config = {"in_channels": 12, "out_channels": 12}
    if kind == "wan":
        config["patch_size"] = (1, 1, 1)
    return make_backbone(kind, config=config, tiny=True, cond_channels=4, seed=0)


def inputs(kind, b=2, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 12, 8, 8, generator=g)
    cond = torch.randn(b, t, 4, 8, 8, generator=g)
    timestep = torch.tensor([500.0, 30.0][:b]) if kind == "wan" else torch.tensor([0.4, -0.3][:b])
    return x, timestep, cond


@pytest.mark.parametrize("kind", ["wan", "svd"])
def test_fresh_shifter_is_bit_identical_for_every_domain(kind):
    net = backbone(kind)
    x, t, c = inputs(kind)
    with torch.no_grad():
        reference = net(x, t, c)
        shifters = DomainShifters.for_backbone(net, rank=3, embed_dim=8)
        assert shifters.num_blocks == len(backbone_blocks(net)) >= 2
        outputs = [net(x, t, c)]
        for domains in ("real", "synthetic", torch.tensor([REAL, SYNTHETIC])):
            with shifters.using(domains, batch=2):
                outputs.append(net(x, t, c))
    assert all(torch.equal(reference, out) for out in outputs)


def train_shifters(net, shifters, kind, steps=25):
    """Stage-1 style: backbone frozen, shifters learn that 'real' samples are brighter than 'synthetic' ones."""
    x, t, c = inputs(kind)
    net.requires_grad_(False)
    opt = torch.optim.Adam(shifters.parameters(), lr=5e-2)
    with torch.no_grad():
        base = net(x, t, c)
    target = base + torch.tensor([0.5, -0.5]).view(2, 1, 1, 1, 1)  # row 0 real: up, row 1 synthetic: down
    for _ in range(steps):
        shifters.set_state(torch.tensor([REAL, SYNTHETIC]))
        loss = ((net(x, t, c) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    shifters.set_state(None)


@pytest.mark.parametrize("kind", ["wan", "svd"])
def test_switching_domain_changes_output_only_after_training(kind):
    net = backbone(kind)
    shifters = DomainShifters.for_backbone(net, rank=2, embed_dim=4, seed=1)
    x, t, c = inputs(kind)

    def by_domain():
        with torch.no_grad():
            with shifters.using("real", batch=2):
                real = net(x, t, c)
            with shifters.using("synthetic", batch=2):
                synthetic = net(x, t, c)
        return real, synthetic

    real, synthetic = by_domain()
    assert torch.equal(real, synthetic)
    train_shifters(net, shifters, kind)
    real, synthetic = by_domain()
    difference = (real - synthetic).mean().item()
    # the learned shift points the trained way (real brighter); SVD's GroupNorms absorb most of a per-channel offset
    assert difference > (0.2 if kind == "wan" else 0.01)
    shifters.detach()
    with torch.no_grad():
        assert torch.equal(net(x, t, c), net(x, t, c))  # hooks gone: plain backbone again


@pytest.mark.parametrize("kind", ["wan", "svd"])
def test_layer_aware_freezing_keeps_real_gradients_out_of_early_blocks(kind):
    net = backbone(kind)
    shifters = DomainShifters.for_backbone(net)
    blocks = backbone_blocks(net)
    x, t, c = inputs(kind)
    frozen = 2

    def grads(detach_rows):
        net.zero_grad()
        shifters.set_state(torch.tensor([REAL, SYNTHETIC]), detach_rows=detach_rows, frozen_blocks=frozen)
        out = net(x, t, c)
        out[0].pow(2).mean().backward()  # loss of the REAL row only
        return [sum(float(p.grad.abs().sum()) for p in block.parameters() if p.grad is not None)
                for _, block, _ in blocks]

    free = grads(None)
    assert all(g > 0 for g in free[:frozen])
    frozen_grads = grads(torch.tensor([True, False]))
    assert frozen_grads[:frozen] == [0.0] * frozen  # the real row trains only the later blocks
    assert all(g > 0 for g in frozen_grads[frozen:])


def test_domain_ids_and_reassignment():
    assert domain_ids("real", 2, 3).tolist() == [[REAL] * 3] * 2
    assert domain_ids(torch.tensor([0, 1]), 2, 3).tolist() == [[0, 0, 0], [1, 1, 1]]
    with pytest.raises(NeuralRenderError):
        domain_ids(torch.tensor([0, 2]), 2, 3)
    with pytest.raises(NeuralRenderError):
        domain_ids("sunny", 2, 3)
    ids = domain_ids("real", 3, 4)
    rows = torch.tensor([True, False, True])
    gen = torch.Generator().manual_seed(0)
    always = reassign_early_blocks(ids, rows, 2, 1.0, gen)
    assert always.tolist() == [[SYNTHETIC, SYNTHETIC, REAL, REAL], [REAL] * 4, [SYNTHETIC, SYNTHETIC, REAL, REAL]]
    assert torch.equal(reassign_early_blocks(ids, rows, 2, 0.0, gen), ids)
    draws = torch.stack([reassign_early_blocks(ids, rows, 1, 0.5, gen)[0, 0] for _ in range(200)])
    assert 0.3 < float((draws == SYNTHETIC).float().mean()) < 0.7


def test_save_load_and_attach_checks(tmp_path):
    net = backbone("wan")
    shifters = DomainShifters.for_backbone(net, rank=2, embed_dim=4)
    with torch.no_grad():
        for p in shifters.left:
            p.normal_()
    shifters.save_pretrained(tmp_path / "s")
    loaded = DomainShifters.from_pretrained(tmp_path / "s")
    assert all(torch.equal(a, b) for a, b in zip(shifters.state_dict().values(), loaded.state_dict().values()))
    assert not any(".left." in k or "embeddings" in k for k in net.state_dict())  # backbone state stays plain
    with pytest.raises(NeuralRenderError, match="block dims"):
        loaded.attach(backbone("svd"))
    with pytest.raises(NeuralRenderError, match="DomainShifters"):
        DomainShifters.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["wan", "svd"])
def test_anchored_synthetic_domain_is_the_bare_backbone(kind, tmp_path):
    """anchor_synthetic: e_synthetic stays 0, so after training the synthetic domain still computes exactly as the
    backbone without shifters, while the real domain moves it; the setting survives save / load."""
    net = backbone(kind)
    x, t, c = inputs(kind)
    with torch.no_grad():
        bare = net(x, t, c)
    shifters = DomainShifters.for_backbone(net, rank=2, embed_dim=4, seed=1, anchor_synthetic=True)
    train_shifters(net, shifters, kind)
    assert float(shifters.embeddings[SYNTHETIC].abs().sum()) > 0  # the parameter is non-zero; its use is masked
    with torch.no_grad():
        with shifters.using("synthetic", batch=2):
            synthetic = net(x, t, c)
        with shifters.using("real", batch=2):
            real = net(x, t, c)
    assert torch.equal(synthetic, bare) and not torch.equal(real, bare)
    shifters.save_pretrained(tmp_path / "s")
    loaded = DomainShifters.from_pretrained(tmp_path / "s")
    assert loaded.config.anchor_synthetic is True
    ids = torch.tensor([SYNTHETIC, REAL])
    assert float(loaded.offsets(0, ids)[0].abs().max()) == 0.0 and float(loaded.offsets(0, ids)[1].abs().max()) > 0
