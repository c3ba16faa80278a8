"""Latent codecs: exact pixel-unshuffle inverse; diffusers VAE wrappers on tiny RANDOMLY initialised VAEs
(shape, normalisation and chunking equivalence only — nothing here is a trained VAE); latent cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.codec import DiffusersVAECodec, LatentCache, PixelUnshuffleCodec


def _video(b=2, t=5, hw=16, seed=0):
    return torch.rand(b, t, 3, hw, hw, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _vae(kind):
    import diffusers

    torch.manual_seed(0)
    if kind == "svd":
        return diffusers.AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=1,
            latent_channels=4,
        )
    if kind == "image":
        return diffusers.AutoencoderKL(
            block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4, scaling_factor=0.5,
            shift_factor=0.1,
        )
    return diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, temperal_downsample=[True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 1.5, 1.0, 0.5],
    )


def test_pixel_unshuffle_exact_inverse():
    codec = PixelUnshuffleCodec(4)
    x = _video(t=3, hw=16)
    z = codec.encode(x)
    assert z.shape == (2, 3, 48, 4, 4) and codec.latent_channels == 48 and codec.spatial_factor == 4
    assert torch.equal(codec.decode(z), x)
    assert torch.equal(z[0, 1, :, 2, 3].view(3, 4, 4), x[0, 1, :, 8:12, 12:16])  # a real space-to-depth
    with pytest.raises(NeuralRenderError, match="multiple of 4"):
        codec.encode(_video(hw=10))
    with pytest.raises(NeuralRenderError, match="latent must be"):
        codec.decode(torch.zeros(1, 2, 5, 4, 4))


@pytest.mark.parametrize("kind", ["svd", "image", "wan"])
@torch.no_grad()
def test_vae_codec_shapes_and_chunked_encode(kind):
    vae = _vae(kind)
    whole, chunked = DiffusersVAECodec(vae), DiffusersVAECodec(vae, chunk_size=1 if kind == "wan" else 2)
    x = _video(t=5)
    z = whole.encode(x)
    t_lat = 2 if kind == "wan" else 5
    assert z.shape == (2, t_lat, 4, 16 // whole.spatial_factor, 16 // whole.spatial_factor)
    torch.testing.assert_close(chunked.encode(x), z, rtol=1e-5, atol=1e-5)
    y = whole.decode(z)
    assert y.shape == x.shape and y.dtype == torch.float32
    if kind != "svd":  # frames (image VAE) or clips (Wan) are independent: chunked decode == whole decode
        torch.testing.assert_close(chunked.decode(z), y, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_vae_codec_normalisation_from_config():
    image = DiffusersVAECodec(_vae("image"))
    x = _video(b=1, t=2)
    raw = image.vae.encode(x.flatten(0, 1)).latent_dist.mode()
    torch.testing.assert_close(image.encode(x).flatten(0, 1), (raw - 0.1) * 0.5)
    wan = DiffusersVAECodec(_vae("wan"))
    raw = wan.vae.encode(_video(b=1).permute(0, 2, 1, 3, 4)).latent_dist.mode()
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, -1, 1, 1, 1)
    std = torch.tensor([2.0, 1.5, 1.0, 0.5]).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(wan.encode(_video(b=1)), ((raw - mean) / std).permute(0, 2, 1, 3, 4))
    # sampling the posterior with a seeded generator is reproducible and differs from the mode
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(image.encode(x, generator=g1), image.encode(x, generator=g2))
    assert not torch.equal(image.encode(x, generator=torch.Generator().manual_seed(1)), image.encode(x))


@torch.no_grad()
def test_svd_temporal_decoder_windows():
    codec, windowed = DiffusersVAECodec(_vae("svd")), DiffusersVAECodec(_vae("svd"), chunk_size=2)
    z = codec.encode(_video(t=4))
    assert torch.equal(DiffusersVAECodec(codec.vae, chunk_size=4).decode(z), codec.decode(z))  # one window == all
    y = windowed.decode(z)
    for start in (0, 2):
        torch.testing.assert_close(y[:, start : start + 2], codec.decode(z[:, start : start + 2]), rtol=1e-4, atol=1e-5)


def test_wan_codec_rejects_other_frame_counts():
    codec = DiffusersVAECodec(_vae("wan"))
    assert codec.latent_frames(9) == 3 and codec.video_frames(3) == 9
    with pytest.raises(NeuralRenderError, match="1 \\+ 4k"):
        codec.encode(_video(b=1, t=4))


@torch.no_grad()
def test_vae_codec_save_load_round_trip(tmp_path):
    codec = DiffusersVAECodec(_vae("image"))
    codec.save_pretrained(tmp_path / "pipe" / "vae")
    loaded = DiffusersVAECodec.from_pretrained(tmp_path / "pipe")
    x = _video(b=1, t=2)
    assert torch.equal(loaded.encode(x), codec.encode(x))
    assert loaded.signature() == codec.signature()
    with pytest.raises(NeuralRenderError, match="no config.json"):
        DiffusersVAECodec.from_pretrained(tmp_path / "nothing")
    (tmp_path / "pipe" / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(NeuralRenderError, match="cannot load") as info:
        DiffusersVAECodec.from_pretrained(tmp_path / "pipe")
    assert "vae" in str(info.value)


class _CountingCodec(PixelUnshuffleCodec):
    def __init__(self):
        super().__init__(2)
        self.calls = 0

    def encode(self, x, generator=None):
        self.calls += 1
        return super().encode(x)


def test_latent_cache_encodes_each_clip_once(tmp_path):
    cache, codec = LatentCache(tmp_path / "cache"), _CountingCodec()
    x = _video(b=1, t=2, hw=8)
    loads = []

    def load():
        loads.append(1)
        return x

    first = cache.encode(codec, "clip_000", "rgb", load)
    again = cache.encode(codec, "clip_000", "rgb", load)
    fresh = LatentCache(tmp_path / "cache").encode(codec, "clip_000", "rgb", load)  # e.g. next epoch / process
    assert codec.calls == 1 and len(loads) == 1
    assert torch.equal(first, again) and torch.equal(first, fresh)
    assert (tmp_path / "cache" / "clip_000" / "rgb.safetensors").is_file()
    cache.encode(codec, "clip_001", "rgb", x)
    assert codec.calls == 2
    other = PixelUnshuffleCodec(4)  # a different codec's latents are not reused
    assert cache.encode(other, "clip_000", "rgb", x).shape[2] == 48
    with pytest.raises(NeuralRenderError, match="unsafe"):
        cache.encode(codec, "../evil", "rgb", x)
    (tmp_path / "cache" / "clip_001" / "rgb.safetensors").write_bytes(b"xx")
    with pytest.raises(NeuralRenderError, match="corrupt") as info:
        cache.encode(codec, "clip_001", "rgb", x)
    assert "clip_001" in str(info.value)
