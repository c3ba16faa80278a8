"""Cache injection (Real2SAM2Real): zero-init is bit-identical, the soft mask confines it, the strength scales it,
perturbations behave, it saves/loads, and only the projection (+ LoRA) trains."""

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.cache_injection import (
    CacheInjection,
    area_pool,
    blocked_light_latents,
    pack_cache_normals,
    perturb_cache_render,
    soft_dilate,
    temporal_pool,
    token_frames,
)
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.tasks.base import make_backbone

torch.set_num_threads(1)
B, T, H, W = 1, 2, 16, 16
BACKBONES = {
    "wan_patch1": ("wan", {"in_channels": 12, "out_channels": 12, "patch_size": [1, 1, 1]}),
    "wan_patch2": ("wan", {"in_channels": 12, "out_channels": 12}),
    "svd": ("svd", {"in_channels": 12, "out_channels": 12}),
}


def cache_render(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    normal = torch.nn.functional.normalize(torch.randn(B, T, 3, H, W, generator=g), dim=2)
    mask = torch.zeros(B, T, 1, H, W)
    mask[..., 4:10, 5:12] = 1.0
    return normal, mask


def inputs(backbone, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(B, T, 12, H // 2, W // 2, generator=g)
    cond = torch.randn(B, T, backbone.cond_channels, H // 2, W // 2, generator=g)
    context = torch.randn(B, 1, backbone.context_dim, generator=g)
    return noisy, torch.tensor([321.0]), cond, context


@pytest.mark.parametrize("name", list(BACKBONES))
def test_zero_init_injection_is_bit_identical(name):
    kind, config = BACKBONES[name]
    backbone = make_backbone(kind, config=config, tiny=True, cond_channels=12, seed=0).eval()
    codec = PixelUnshuffleCodec(2)
    injection = CacheInjection.for_backbone(backbone, codec.latent_channels)
    assert injection.is_zero
    normal, mask = cache_render()
    token_add = injection.token_add(codec, normal, mask, strength=1.0)
    assert tuple(token_add.shape) == (B, *backbone._token_shape(T, H // 2, W // 2))
    noisy, t, cond, context = inputs(backbone)
    with torch.no_grad():
        plain = backbone(noisy, t, cond, context)
        injected = backbone(noisy, t, cond, context, added={"token_add": token_add})
    assert torch.equal(plain, injected)
    # a trained (non-zero) projection changes the output, only through the masked tokens
    with torch.no_grad():
        injection.proj.weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(3))
    token_add = injection.token_add(codec, normal, mask, strength=1.0)
    with torch.no_grad():
        changed = backbone(noisy, t, cond, context, added={"token_add": token_add})
        off = backbone(noisy, t, cond, context, added={"token_add": injection.token_add(codec, normal, mask, 0.0)})
    assert float((changed - plain).abs().max()) > 1e-3
    assert torch.equal(off, plain)  # strength 0 = no injection, bit-identical


def test_soft_mask_confines_and_strength_scales():
    backbone = make_backbone("wan", config=BACKBONES["wan_patch1"][1], tiny=True, cond_channels=12, seed=0)
    codec = PixelUnshuffleCodec(2)
    injection = CacheInjection.for_backbone(backbone, 12, mask_dilation=1)
    with torch.no_grad():
        injection.proj.bias.fill_(1.0)
    normal, mask = cache_render()
    full = injection.token_add(codec, normal, mask, strength=1.0).detach()
    soft = injection.soft_mask(mask, (T, H // 2, W // 2))
    assert float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0
    assert torch.allclose(full, soft * 1.0)  # bias 1, zero weights: token_add == soft mask on every channel
    outside = soft.expand_as(full) == 0
    assert bool(outside.any()) and float(full[outside].abs().max()) == 0.0
    assert torch.allclose(injection.token_add(codec, normal, mask, strength=0.25), 0.25 * full)
    per_clip = injection(torch.zeros(2, T, 12, H // 2, W // 2), mask.expand(2, -1, -1, -1, -1),
                         strength=torch.tensor([0.0, 2.0])).detach()
    assert float(per_clip[0].abs().max()) == 0.0 and torch.allclose(per_clip[1], 2 * soft[0])
    with pytest.raises(NeuralRenderError):
        injection(torch.zeros(B, T, 5, H // 2, W // 2), mask)


def test_soft_dilate_and_pools():
    m = torch.zeros(1, 1, 1, 7, 7)
    m[..., 3, 3] = 1.0
    d = soft_dilate(m, 2)
    assert float(d[..., 3, 3]) == 1.0
    assert abs(float(d[..., 3, 4]) - 2 / 3) < 1e-6 and abs(float(d[..., 1, 1]) - 1 / 3) < 1e-6
    assert float(d[..., 0, 0]) == 0.0
    cover = area_pool(torch.ones(1, 2, 1, 8, 8).tril(), (2, 2, 2))
    assert cover.shape == (1, 2, 1, 2, 2) and 0 < float(cover[0, 0, 0, 0, 0]) < 1
    frames = torch.zeros(1, 9, 1, 2, 2)
    frames[0, 6] = 1.0
    pooled = temporal_pool(frames, 3)  # Wan VAE: 9 frames -> 1 + 2 latent frames (frame 0, then groups of 4)
    assert pooled.shape[1] == 3 and pooled[0, :, 0, 0, 0].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(NeuralRenderError):
        temporal_pool(frames, 4)
    assert pack_cache_normals(torch.ones(1, 1, 3, 2, 2), torch.zeros(1, 1, 1, 2, 2)).abs().sum() == 0


def test_token_frames_follow_the_temporal_patch():
    backbone = make_backbone("wan", config=BACKBONES["wan_patch1"][1], tiny=True, cond_channels=12, seed=0)
    assert token_frames(backbone, 2, 6) == slice(2, 6)


def test_perturbations_are_seeded_and_do_what_they_say():
    normal, mask = cache_render()
    a = perturb_cache_render(normal, mask, torch.Generator().manual_seed(5), probability=1.0)
    b = perturb_cache_render(normal, mask, torch.Generator().manual_seed(5), probability=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    n, m = a
    assert n.shape == normal.shape and m.shape == mask.shape
    length = n.norm(dim=2, keepdim=True)
    assert float(((length - 1).abs() * m).max()) < 1e-5 and float((length * (1 - m)).max()) == 0.0
    grown = perturb_cache_render(normal, mask, torch.Generator().manual_seed(0), max_dilation=2, max_shift=0,
                                 noise_std=0.0, probability=1.0)
    assert float(grown[1].sum()) > float(mask.sum())  # dilation enlarges the mask
    inside = mask > 0
    assert torch.allclose(grown[0][inside.expand_as(normal)], (normal * mask)[inside.expand_as(normal)])
    shifted = perturb_cache_render(normal, mask, torch.Generator().manual_seed(1), max_dilation=0, max_shift=3,
                                   noise_std=0.0, probability=1.0)
    assert float(shifted[1].sum()) <= float(mask.sum())
    unchanged = perturb_cache_render(normal, mask, torch.Generator().manual_seed(1), probability=0.0)
    assert torch.allclose(unchanged[0], normal * mask) and torch.equal(unchanged[1], mask)


def test_save_load_roundtrip(tmp_path):
    injection = CacheInjection(latent_channels=12, token_dim=32, kernel_size=(1, 3, 3), padding=(0, 1, 1),
                               mask_dilation=2, strength=0.7)
    with torch.no_grad():
        injection.proj.weight.normal_(generator=torch.Generator().manual_seed(0))
    injection.save_pretrained(tmp_path / "inj")
    loaded = CacheInjection.from_pretrained(tmp_path / "inj")
    assert loaded.config.strength == 0.7 and loaded.mask_dilation == 2
    assert torch.equal(loaded.proj.weight, injection.proj.weight)
    with pytest.raises(NeuralRenderError, match="no config.json"):
        CacheInjection.from_pretrained(tmp_path / "missing")


def test_only_the_projection_receives_gradients_through_a_frozen_backbone():
    backbone = make_backbone("wan", config=BACKBONES["wan_patch1"][1], tiny=True, cond_channels=12, seed=0)
    backbone.requires_grad_(False)
    codec = PixelUnshuffleCodec(2)
    injection = CacheInjection.for_backbone(backbone, 12)
    normal, mask = cache_render()
    noisy, t, cond, context = inputs(backbone)
    out = backbone(noisy, t, cond, context, added={"token_add": injection.token_add(codec, normal, mask)})
    out.square().mean().backward()
    assert injection.proj.weight.grad is not None and float(injection.proj.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in backbone.parameters())


def test_shadow_injection_zero_init_needs_the_map_and_widens_the_soft_mask():
    backbone = make_backbone("svd", config=BACKBONES["svd"][1], tiny=True, cond_channels=12, seed=0).eval()
    codec = PixelUnshuffleCodec(2)
    injection = CacheInjection.for_backbone(backbone, codec.latent_channels, mask_dilation=0, shadow=True)
    assert injection.proj.in_channels == 2 * codec.latent_channels + 1 and injection.is_zero
    normal, mask = cache_render()
    shadow = torch.zeros(B, T, 1, H, W)
    shadow[..., 10:16, 0:4] = 0.6  # cast away from the object (rows 4-9, columns 5-11)
    with pytest.raises(NeuralRenderError, match="shadow"):
        injection.token_add(codec, normal, mask)
    token_add = injection.token_add(codec, normal, mask, shadow=shadow)
    noisy, t, cond, context = inputs(backbone)
    with torch.no_grad():
        plain = backbone(noisy, t, cond, context)
        assert torch.equal(plain, backbone(noisy, t, cond, context, added={"token_add": token_add}))
        injection.proj.bias.fill_(1.0)
    with_shadow = injection.token_add(codec, normal, mask, shadow=shadow).detach()
    region = torch.maximum(mask, (shadow > 0.02).float())
    assert torch.allclose(with_shadow, injection.soft_mask(region, (T, H // 2, W // 2)).expand_as(with_shadow))
    assert float(with_shadow[..., 5:8, 0:2].min()) == 1.0  # the shadow's tokens, outside the object's
    # the shadow latents reach the projection: weights on them change the tokens only where the shadow is
    with torch.no_grad():
        injection.proj.bias.zero_()
        injection.proj.weight[:, 12:24].fill_(0.1)
    assert float(injection.token_add(codec, normal, mask, shadow=torch.zeros_like(shadow)).abs().max()) == 0.0
    assert float(injection.token_add(codec, normal, mask, shadow=shadow).abs().max()) > 0.0
    with pytest.raises(NeuralRenderError, match="must match"):
        injection.token_add(codec, normal, mask, shadow=shadow[..., :8, :])


def test_blocked_light_packing():
    from neural_render.data.forward_data import display_pack
    from neural_render.models.cache_injection import pack_cache_shadow

    light = torch.rand(B, T, 3, H, W, generator=torch.Generator().manual_seed(0))
    shadow = torch.zeros(B, T, 1, H, W)
    shadow[..., :4, :] = 1.0
    shadow[..., 4:8, :] = 0.5
    packed = pack_cache_shadow(shadow, light)
    assert torch.equal(packed[..., 8:, :], torch.zeros_like(packed[..., 8:, :]))  # nothing blocked
    assert torch.allclose(packed[..., :4, :], display_pack(light)[..., :4, :] + 1.0)  # all light blocked
    half = display_pack(light)[..., 4:8, :] - display_pack(light * 0.5)[..., 4:8, :]
    assert torch.allclose(packed[..., 4:8, :], half) and float(half.min()) >= 0.0
    assert torch.equal(pack_cache_shadow(shadow), shadow.expand(B, T, 3, H, W))
    backbone = make_backbone("svd", config=BACKBONES["svd"][1], tiny=True, cond_channels=12, seed=0)
    injection = CacheInjection.for_backbone(backbone, 12, shadow=True, shadow_light=True)
    normal, mask = cache_render()
    with pytest.raises(NeuralRenderError, match="light"):
        injection.token_add(PixelUnshuffleCodec(2), normal, mask, shadow=shadow)
    assert injection.token_add(PixelUnshuffleCodec(2), normal, mask, shadow=shadow, light=light).abs().sum() == 0
    with pytest.raises(NeuralRenderError, match="need shadow=True"):
        CacheInjection(12, 32, shadow=False, shadow_light=True)
    with pytest.raises(NeuralRenderError, match="need shadow=True"):
        CacheInjection(12, 32, shadow=False, received_shadow=True)


def test_shadow_residual_is_zero_at_init_and_subtracts_the_gained_blocked_light():
    from neural_render.data.forward_data import display_pack
    from neural_render.models.cache_injection import pack_cache_shadow

    codec = PixelUnshuffleCodec(2)
    light = torch.rand(B, T, 3, H, W, generator=torch.Generator().manual_seed(0)) * 2.0
    shadow = torch.zeros(B, T, 1, H, W)
    shadow[..., :6, :] = 0.7
    blocked = blocked_light_latents(codec.encode, shadow, light)
    assert tuple(blocked.shape) == (B, T, 12, H // 2, W // 2)
    # a difference of encodings: for this linear codec, the encoded blocked light; zero where nothing is blocked
    assert torch.allclose(blocked, codec.encode(pack_cache_shadow(shadow, light)), atol=1e-6)
    assert torch.equal(blocked[..., 3:, :], torch.zeros_like(blocked[..., 3:, :]))
    expected = display_pack(light[..., :6, :]) - display_pack(light[..., :6, :] * 0.3)
    assert torch.allclose(codec.decode(blocked)[..., :6, :], expected, atol=1e-6)

    injection = CacheInjection(12, 32, shadow=True, shadow_residual=True)
    assert injection.is_zero and injection.needs_light
    assert injection.light_of(light) is None  # the token path packs the bare map; the residual needs the light
    with pytest.raises(NeuralRenderError, match="needs the light"):
        injection.light_of(None)
    assert torch.equal(injection.x0_add(blocked), torch.zeros_like(blocked))  # fresh: exact zeros
    with torch.no_grad():
        injection.shadow_gain.copy_(torch.linspace(0.1, 1.2, 12))
    assert not injection.is_zero
    gain = torch.linspace(0.1, 1.2, 12).view(1, 1, 12, 1, 1)
    assert torch.allclose(injection.x0_add(blocked), -gain * blocked)
    assert torch.allclose(injection.x0_add(blocked, strength=0.5), -0.5 * gain * blocked)
    assert torch.equal(injection.x0_add(blocked, strength=0.0), torch.zeros_like(blocked))
    assert injection.x0_add(None) is None
    with pytest.raises(NeuralRenderError, match="blocked-light latents"):
        injection.x0_add(blocked[:, :, :6])
    assert CacheInjection(12, 32, shadow=True).x0_add(blocked) is None  # no shadow residual configured
    assert not CacheInjection(12, 32, shadow=True).needs_light
    with pytest.raises(NeuralRenderError, match="need shadow=True"):
        CacheInjection(12, 32, shadow=False, shadow_residual=True)
