"""IC-LoRA: shared positions of reference and target halves (both backbones), reference frames never noised and at
timestep 0, never in the loss, LoRA targets/rank, save/load and refusal of a LoRA made for another backbone."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone import build_backbone
from neural_render.models.denoiser import Denoiser
from neural_render.models.ic_lora import (
    DEFAULT_ADAPTER,
    add_ic_lora,
    backbone_signature,
    ic_sequence,
    in_context,
    load_ic_lora,
    save_ic_lora,
    set_in_context,
)

torch.set_num_threads(1)
KINDS = ("svd", "wan")


def _backbone(kind, channels=4, seed=0):
    return build_backbone(kind, config={"in_channels": channels, "out_channels": channels}, tiny=True, seed=seed).eval()


def _video(t=2, c=4, seed=0):
    return torch.randn(1, t, c, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_equal_halves_give_equal_outputs_only_with_shared_positions(kind):
    bb = _backbone(kind)
    x = _video()
    seq, clean = ic_sequence(x, x)
    assert clean.tolist() == [[True, True, False, False]]
    ts = torch.tensor([500.0])
    with torch.no_grad():
        plain = bb(seq, ts)
        with in_context(bb):
            shared = bb(seq, ts)
        after = bb(seq, ts)
    # same content at the same positions -> the two halves are indistinguishable to the network
    assert (shared[:, :2] - shared[:, 2:]).abs().max() < 1e-5
    # without the in-context layout the target half sits at later frame positions (and SVD's temporal convs join
    # the halves), so the outputs differ
    assert (plain[:, :2] - plain[:, 2:]).abs().max() > 1e-3
    assert torch.equal(after, plain)  # hooks are no-ops outside the context


def test_wan_rotary_positions_of_both_halves_equal_a_single_clip():
    bb = _backbone("wan")
    rope = bb.transformer.rope
    single = rope(torch.zeros(1, 4, 3, 8, 8))
    joined = torch.zeros(1, 4, 6, 8, 8)
    with in_context(bb):
        cos, sin = rope(joined)
    n = single[0].shape[1]
    for got, want in ((cos, single[0]), (sin, single[1])):
        assert got.shape[1] == 2 * n
        assert torch.equal(got[:, :n], want) and torch.equal(got[:, n:], want)
    plain_cos, _ = rope(joined)
    assert not torch.equal(plain_cos[:, n:], single[0])  # the unmodified model gives later frames other positions


def test_wan_reference_tokens_are_clean_at_timestep_zero_and_targets_noised():
    bb = _backbone("wan")
    seen = {}

    def spy(module, args, kwargs):
        seen["hidden"] = args[0].detach().clone()
        seen["timestep"] = args[1].detach().clone()

    bb.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    ref, target = _video(2, seed=1), _video(2, seed=2)
    x0, clean = ic_sequence(ref, target)
    set_in_context(bb, True)
    loss = Denoiser("flow").loss(bb, x0, clean_frames=clean, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    hidden = seen["hidden"].permute(0, 2, 1, 3, 4)          # (B, C, F, H, W) -> (B, F, C, H, W)
    assert torch.equal(hidden[:, :2], ref)                   # reference given exactly: never noised
    assert not torch.allclose(hidden[:, 2:], target)         # target noised
    tokens_per_frame = (8 // 2) * (8 // 2)
    timestep = seen["timestep"]
    assert timestep.shape == (1, 4 * tokens_per_frame)       # per-token timesteps
    assert torch.all(timestep[:, :2 * tokens_per_frame] == 0)
    assert torch.all(timestep[:, 2 * tokens_per_frame:] > 0)


def test_svd_reference_frames_clean_with_their_own_timestep_embedding():
    bb = _backbone("svd")
    seen = {}
    original = bb._per_frame_embedding

    def spy(timestep, time_ids, dtype):
        seen["timestep"] = timestep.detach().clone()
        return original(timestep, time_ids, dtype)

    bb._per_frame_embedding = spy
    bb.unet.register_forward_pre_hook(lambda m, a: seen.__setitem__("sample", a[0].detach().clone()))
    ref, target = _video(2, seed=3), _video(2, seed=4)
    x0, clean = ic_sequence(ref, target)
    set_in_context(bb, True)
    Denoiser("x0").loss(bb, x0, clean_frames=clean)
    assert torch.equal(seen["sample"][:, :2], ref)                       # x0 kind: c_in = 1, reference untouched
    assert torch.equal(seen["sample"][:, 2:], torch.zeros_like(target))  # targets replaced (fully noised)
    assert seen["timestep"].tolist() == [[0.0, 0.0, 999.0, 999.0]]


class _FreeOutput(torch.nn.Module):
    """Stand-in backbone whose prediction is a free parameter: the loss gradient shows which frames count."""

    def __init__(self, shape):
        super().__init__()
        self.out = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(5)))

    def forward(self, noisy, timestep, cond=None, context=None, added=None):
        return noisy * 0 + self.out


@pytest.mark.parametrize("kind", ("flow", "edm", "x0"))
def test_reference_frames_never_enter_the_loss(kind):
    ref, target = _video(3, seed=6), _video(3, seed=7)
    x0, clean = ic_sequence(ref, target)
    model = _FreeOutput(x0.shape)
    loss = Denoiser(kind).loss(model, x0, clean_frames=clean, generator=torch.Generator().manual_seed(0))
    loss.backward()
    grad = model.out.grad
    assert torch.count_nonzero(grad[:, :3]) == 0
    assert torch.count_nonzero(grad[:, 3:]) > 0
    with torch.no_grad():  # whatever the network says about the reference, the loss is the same
        model.out[:, :3] += 100.0
    again = Denoiser(kind).loss(model, x0, clean_frames=clean, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(again, loss)


@pytest.mark.parametrize("kind", KINDS)
def test_lora_rank_targets_zero_init_and_save_load(kind, tmp_path):
    bb = _backbone(kind)
    seq, _ = ic_sequence(_video(seed=8), _video(seed=9))
    ts = torch.tensor([[0.0, 0.0, 700.0, 700.0]])
    set_in_context(bb, True)
    with torch.no_grad():
        base = bb(seq, ts)
    add_ic_lora(bb, rank=3)
    names = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    modules = {n.split(".lora_")[0] for n in names}
    for suffix in ("to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2"):  # attention q/k/v/out + FFN
        assert any(m.endswith(suffix) for m in modules), suffix
    a = [p for n, p in bb.named_parameters() if "lora_A" in n]
    assert all(p.shape[0] == 3 for p in a)  # rank
    with torch.no_grad():
        assert torch.equal(bb(seq, ts), base)  # zero-initialised B
        for n, p in bb.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
        trained = bb(seq, ts)
    assert not torch.allclose(trained, base)
    save_ic_lora(bb, tmp_path / "lora", info={"target": "residual"})
    fresh = _backbone(kind)
    set_in_context(fresh, True)
    load_ic_lora(fresh, tmp_path / "lora")
    with torch.no_grad():
        assert torch.allclose(fresh(seq, ts), trained, atol=1e-6)


def test_lora_for_another_backbone_is_refused(tmp_path):
    svd = _backbone("svd")
    add_ic_lora(svd, rank=2)
    save_ic_lora(svd, tmp_path / "svd_lora")
    with pytest.raises(NeuralRenderError, match="svd") as err:
        load_ic_lora(_backbone("wan"), tmp_path / "svd_lora")
    assert "svd_lora" in str(err.value)
    with pytest.raises(NeuralRenderError, match="architecture"):
        load_ic_lora(_backbone("svd", channels=8), tmp_path / "svd_lora")
    assert backbone_signature(_backbone("svd")) == backbone_signature(_backbone("svd", seed=1))  # weights don't matter
    with pytest.raises(NeuralRenderError, match="IC-LoRA"):
        load_ic_lora(_backbone("svd"), tmp_path)  # not a LoRA folder
    assert DEFAULT_ADAPTER == "sim2real"


def test_odd_sequence_in_context_is_an_error():
    bb = _backbone("wan")
    with in_context(bb), pytest.raises(NeuralRenderError, match="halves"):
        bb(_video(3), torch.tensor([10.0]))
