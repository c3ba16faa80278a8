"""Backbone construction and loading from local diffusers folders: round trips give identical outputs, bad
folders raise NeuralRenderError naming the folder and the problem. Tiny models saved into tmp_path."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.backbone import build_backbone, load_backbone, tiny_svd_config, tiny_wan_config
from neural_render.models.backbone.svd import SVDBackbone
from neural_render.models.backbone.wan import WanBackbone

KINDS = ("svd", "wan")
SUB = {"svd": "unet", "wan": "transformer"}


def _inputs(bb, cond=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        noisy=torch.randn(1, 2, bb.latent_channels, 16, 16, generator=g),
        timestep=torch.tensor([[3.0, 600.0]]),
        cond=torch.randn(1, 2, cond, 16, 16, generator=g) if cond else None,
        context=torch.randn(1, 2, bb.context_dim, generator=g),
    )


def _diffusers_model(kind, seed=0):
    import diffusers

    torch.manual_seed(seed)
    cls = diffusers.UNetSpatioTemporalConditionModel if kind == "svd" else diffusers.WanTransformer3DModel
    return cls(**(tiny_svd_config() if kind == "svd" else tiny_wan_config()))


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_adapter_save_load_round_trip_identical(kind, tmp_path):
    bb = build_backbone(kind, tiny=True, seed=1, cond_channels=3, autocast_dtype=None)
    proj = bb.model.conv_in if kind == "svd" else bb.model.patch_embedding
    proj.weight[:, 4:].normal_(0, 0.2, generator=torch.Generator().manual_seed(3))  # "trained" extra channels
    bb.save_pretrained(tmp_path / "bb")
    settings = json.loads((tmp_path / "bb" / "backbone.json").read_text())
    assert settings["kind"] == kind and settings["added_input_channels"] == 3 and settings["base_in_channels"] == 4
    assert (tmp_path / "bb" / SUB[kind] / "diffusion_pytorch_model.safetensors").is_file()
    cls = SVDBackbone if kind == "svd" else WanBackbone
    loaded = cls.from_pretrained(tmp_path / "bb")
    assert loaded.cond_channels == 3
    inp = _inputs(bb, cond=3)
    assert torch.equal(loaded(**inp), bb(**inp))
    # same through build_backbone(pretrained_dir=...)
    assert torch.equal(build_backbone(kind, pretrained_dir=tmp_path / "bb")(**inp), bb(**inp))
    # the saved model is plain diffusers layout: the unmodified class loads it (in_channels = 4 + 3)
    import diffusers

    plain_cls = type(bb.model)
    plain = plain_cls.from_pretrained(tmp_path / "bb", subfolder=SUB[kind], local_files_only=True)
    first_layer = plain.conv_in if kind == "svd" else plain.patch_embedding
    assert plain.config.in_channels == 7 and type(first_layer).__module__.startswith("torch")
    assert diffusers is not None


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_load_pretrained_diffusers_folder_and_expand(kind, tmp_path):
    model = _diffusers_model(kind, seed=2)
    model.save_pretrained(tmp_path / "pipe" / SUB[kind])
    bb = build_backbone(kind, pretrained_dir=tmp_path / "pipe")
    bb_cond = build_backbone(kind, pretrained_dir=tmp_path / "pipe", cond_channels=6)
    inp = _inputs(bb)
    out = bb(**inp)
    assert torch.equal(out, bb_cond(**dict(inp, cond=torch.randn(1, 2, 6, 16, 16))))
    # and equals the bare diffusers module on its own layout (per-clip timestep)
    t = torch.tensor([3.0])
    if kind == "svd":
        ids = torch.tensor([list(bb.added_time_ids)])
        ref = model(inp["noisy"], t, encoder_hidden_states=inp["context"], added_time_ids=ids).sample
    else:
        ref = model(inp["noisy"].permute(0, 2, 1, 3, 4), t,
                    encoder_hidden_states=inp["context"]).sample.permute(0, 2, 1, 3, 4)
    assert torch.equal(bb(**dict(inp, timestep=t)), ref)
    # model folder directly (config.json at the top)
    model.save_pretrained(tmp_path / "direct")
    assert torch.equal(build_backbone(kind, pretrained_dir=tmp_path / "direct")(**inp), out)


def _saved(kind, tmp_path):
    _diffusers_model(kind).save_pretrained(tmp_path / "m" / SUB[kind])
    return tmp_path / "m", tmp_path / "m" / SUB[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_folders_raise_naming_folder(kind, tmp_path):
    def expect(path, pattern):
        with pytest.raises(NeuralRenderError, match=pattern) as info:
            build_backbone(kind, pretrained_dir=path)
        assert str(path) in str(info.value)

    expect(tmp_path / "missing", "does not exist")
    (tmp_path / "empty").mkdir()
    expect(tmp_path / "empty", "no config.json")
    (tmp_path / "file.txt").write_text("x")
    expect(tmp_path / "file.txt", "not a folder")

    root, folder = _saved(kind, tmp_path)
    weights = folder / "diffusion_pytorch_model.safetensors"
    good_bytes = weights.read_bytes()
    good_config = (folder / "config.json").read_text()

    weights.write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated weights
    expect(root, "cannot load")
    weights.write_bytes(good_bytes)

    (folder / "config.json").write_text("{not json")
    expect(root, "cannot read JSON")

    cfg = json.loads(good_config)
    cfg["_class_name"] = "AutoencoderKL"
    (folder / "config.json").write_text(json.dumps(cfg))
    expect(root, "expected a")

    cfg = json.loads(good_config)
    cfg["in_channels"] = 6  # mismatched shapes: input projection weights are for 4 channels
    (folder / "config.json").write_text(json.dumps(cfg))
    expect(root, "(?i)size|shape|mismatch")

    cfg = json.loads(good_config)
    # the config asks for weights the checkpoint lacks
    cfg["transformer_layers_per_block" if kind == "svd" else "num_layers"] = 2 if kind == "svd" else 3
    (folder / "config.json").write_text(json.dumps(cfg))
    expect(root, "weights missing")

    cfg = json.loads(good_config)
    if kind == "wan":
        cfg["num_layers"] = 1  # checkpoint holds weights the config has no place for
    else:
        cfg["down_block_types"] = ["DownBlockSpatioTemporal", "DownBlockSpatioTemporal"]
        cfg["up_block_types"] = ["UpBlockSpatioTemporal", "UpBlockSpatioTemporal"]
    (folder / "config.json").write_text(json.dumps(cfg))
    expect(root, "unexpected")

    (folder / "config.json").write_text(good_config)
    weights.unlink()
    expect(root, "no weights file")


def test_bad_build_arguments(tmp_path):
    with pytest.raises(NeuralRenderError, match="unknown backbone kind"):
        build_backbone("unet3d", tiny=True)
    with pytest.raises(NeuralRenderError, match="give config"):
        build_backbone("wan")
    with pytest.raises(NeuralRenderError, match="not both"):
        build_backbone("wan", tiny=True, pretrained_dir=tmp_path)
    with pytest.raises(NeuralRenderError, match="config"):
        build_backbone("wan", config={"no_such_option": 1}, tiny=True)
    with pytest.raises(NeuralRenderError, match="adapter options"):
        build_backbone("wan", tiny=True, no_such_option=1)
    with pytest.raises(NeuralRenderError, match="natively"):
        build_backbone("svd", config={"in_channels": 8}, tiny=True, cond_channels=2)
    with pytest.raises(NeuralRenderError, match="backbone.json"):
        load_backbone(tmp_path)


@torch.no_grad()
def test_native_condition_channels_and_seeded_init():
    """An SVD img2vid-like UNet (in 8, out 4) has 4 native condition channels; seeds reproduce the init
    without touching the global RNG."""
    state = torch.random.get_rng_state()
    a = build_backbone("svd", config={"in_channels": 8}, tiny=True, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_backbone("svd", config={"in_channels": 8}, tiny=True, seed=5, cond_channels=6)
    assert a.cond_channels == 4 and b.cond_channels == 6
    inp = _inputs(a, cond=4)
    assert torch.equal(a(**inp), b(**dict(inp, cond=torch.cat([inp["cond"], torch.randn(1, 2, 2, 16, 16)], 2))))
