"""DiffusionRendererUNet beyond the parity fixtures: the "time" context type (which the reference cannot run),
token layouts, and the configurations and inputs it refuses."""

from __future__ import annotations

import copy

import pytest
import torch

from neural_render.models.diffusion_renderer.unet_context import (
    CONTEXT_MAX_NORM,
    DiffusionRendererUNet,
)

FRAMES = 3


def _config(**extra) -> dict:
    return {
        "sample_size": 4, "in_channels": 8, "out_channels": 4, "block_out_channels": (32, 32),
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "layers_per_block": 1, "num_attention_heads": (1, 2), "addition_time_embed_dim": 4,
        "projection_class_embeddings_input_dim": 12, "num_frames": FRAMES, "cross_attention_dim": 32,
        "temporal_cross_attention_dim": 32, **extra,
    }


def _inputs(batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, FRAMES, 8, 4, 8, generator=g)
    tokens = torch.randn(batch, 2, 32, generator=g)
    return x, torch.tensor(0.5), tokens, torch.tensor([[6.0, 127.0, 0.0]] * batch)


@torch.no_grad()
def test_time_context_adds_the_row_to_the_time_embedding():
    """'time': the looked-up (renormalised) row enters as a shift of the time embedding, one row per sample."""
    torch.manual_seed(0)
    # 64 channels: with 32 (one channel per GroupNorm group) the next norm would cancel any time-embedding shift
    unet = DiffusionRendererUNet(**_config(context_embedding_type="time", block_out_channels=(64, 64))).eval()
    assert unet.context_embedding.embedding_dim == 4 * 64
    with torch.no_grad():
        unet.context_embedding.weight[2] *= 4 * CONTEXT_MAX_NORM / unet.context_embedding.weight[2].norm()
    x, t, tokens, ids = _inputs(2)
    out = unet(x, t, tokens, ids, input_context=torch.tensor([2, 5])).sample
    rows = unet.context_rows(torch.tensor([2, 5]), 2)
    assert abs(float(rows[0].norm()) - CONTEXT_MAX_NORM) < 1e-4
    for i in range(2):
        shifted = copy.deepcopy(unet)
        shifted.context_embedding = None
        shifted.time_embedding.linear_2.bias += rows[i]
        expect = shifted(x[i:i + 1], t, tokens[i:i + 1], ids[i:i + 1]).sample
        torch.testing.assert_close(out[i:i + 1], expect, atol=1e-5, rtol=1e-5)
    plain = unet(x, t, tokens, ids).sample  # no input_context: no row added
    assert float((plain - out).abs().max()) > 1e-3


@torch.no_grad()
def test_a_deep_copy_runs_on_its_own_hooks():
    """EMA copies the model: the copy's hooks must hand the copy's tokens to the copy's blocks."""
    torch.manual_seed(4)
    unet = DiffusionRendererUNet(**_config(context_embedding_type="clip")).eval()
    twin = copy.deepcopy(unet)
    x, t, tokens, ids = _inputs(1)
    torch.testing.assert_close(twin(x, t, tokens, ids, input_context=1).sample,
                               unet(x, t, tokens, ids, input_context=1).sample, atol=0, rtol=0)


@torch.no_grad()
def test_token_layouts_agree():
    torch.manual_seed(1)
    unet = DiffusionRendererUNet(**_config(context_embedding_type="clip")).eval()
    x, t, tokens, ids = _inputs(1)
    a = unet(x, t, tokens, ids, input_context=3).sample
    b = unet(x, t, tokens[:, None], ids, input_context=torch.tensor([[3]])).sample
    c = unet(x, t, tokens[:, None].expand(1, FRAMES, -1, -1), ids, input_context=torch.tensor([3])).sample
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-6)
    per_frame = tokens[:, None].repeat(1, FRAMES, 1, 1)
    per_frame[:, 1] += 1.0
    d = unet(x, t, per_frame, ids, input_context=3).sample
    assert float((d - a).abs().max()) > 1e-4  # per-frame tokens reach their frames


@torch.no_grad()
def test_per_level_tokens_without_temporal_cross_attention():
    torch.manual_seed(2)
    unet = DiffusionRendererUNet(**_config(cross_attention_dim=(32, 16), temporal_cross_attention_dim=None,
                                           multi_res_encoder_hidden_states=True)).eval()
    temporal = [b for m in unet.modules() for b in getattr(m, "temporal_transformer_blocks", [])]
    assert temporal and all(b.attn2 is None for b in temporal)
    x, t, _, ids = _inputs(1)
    levels = [torch.randn(1, FRAMES, 8, 32), torch.randn(1, FRAMES, 2, 16)]
    assert unet(x, t, levels, ids).sample.shape == (1, FRAMES, 4, 4, 8)
    with pytest.raises(ValueError, match="1 token maps given for 2 UNet levels"):
        unet(x, t, levels[:1], ids)


def test_refused_configurations():
    with pytest.raises(ValueError, match="temporal_cross_attention_dim 16 differs"):
        DiffusionRendererUNet(**_config(temporal_cross_attention_dim=16))
    with pytest.raises(ValueError, match="'clip' with multi_res_encoder_hidden_states"):
        DiffusionRendererUNet(**_config(context_embedding_type="clip", multi_res_encoder_hidden_states=True,
                                        cross_attention_dim=(32, 32)))
    with pytest.raises(ValueError, match="context_embedding_type 'text'"):
        DiffusionRendererUNet(**_config(context_embedding_type="text"))


@torch.no_grad()
def test_refused_inputs():
    torch.manual_seed(3)
    plain = DiffusionRendererUNet(**_config()).eval()
    x, t, tokens, ids = _inputs(1)
    with pytest.raises(ValueError, match="no context embedding"):
        plain(x, t, tokens, ids, input_context=0)
    clip = DiffusionRendererUNet(**_config(context_embedding_type="clip", context_vocab_size=6)).eval()
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 6\)"):
        clip(x, t, tokens, ids, input_context=6)
    with pytest.raises(ValueError, match="2 ids for a batch of 1"):
        clip(x, t, tokens, ids, input_context=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="do not fit batch 1 x 3 frames"):
        clip(x, t, torch.zeros(1, 2, 5, 32), ids, input_context=0)
