"""Loading DiffusionRenderer folders: recognition, LoRA options and key formats, and one clear error per bad input.

Every bad folder is a copy of a parity fixture with one thing broken; the error must be a NeuralRenderError
(exit 2 in the CLI) whose ``path`` names the folder (or, for the LoRA, its file) and whose reason names the fault.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neural_render.errors import NeuralRenderError
from neural_render.models.diffusion_renderer.checkpoint import (
    DiffusionRendererCheckpointError,
    is_diffusion_renderer_folder,
    load_diffusion_renderer,
)
from neural_render.models.diffusion_renderer.lora import LORA_FILE, LoraMismatchError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diffusion_renderer"


@pytest.fixture
def inverse_copy(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "inverse", tmp_path / "inverse"))


@pytest.fixture
def forward_copy(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "forward", tmp_path / "forward"))


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _raises(folder: Path, match: str, **kw) -> NeuralRenderError:
    with pytest.raises(DiffusionRendererCheckpointError, match=match) as info:
        load_diffusion_renderer(folder, **kw)
    assert isinstance(info.value, NeuralRenderError) and info.value.path == str(folder)
    return info.value


def test_recognises_both_fixture_folders_and_nothing_else(tmp_path):
    assert is_diffusion_renderer_folder(FIXTURES / "inverse") and is_diffusion_renderer_folder(FIXTURES / "forward")
    assert not is_diffusion_renderer_folder(FIXTURES) and not is_diffusion_renderer_folder(tmp_path / "nope")
    inv, fwd = load_diffusion_renderer(FIXTURES / "inverse"), load_diffusion_renderer(FIXTURES / "forward")
    assert (inv.kind, fwd.kind) == ("inverse", "forward")
    assert inv.env_encoder is None and fwd.env_encoder is not None
    assert fwd.lora_layers > 0 and inv.lora_layers == 0  # the LoRA is applied when present, as the reference does
    assert fwd.settings.gbuffers == ("basecolor", "normal", "depth", "roughness", "metallic")
    assert fwd.settings.scale_cond_latents and not inv.settings.scale_cond_latents
    assert fwd.settings.added_time_ids(2).tolist() == [[6.0, 127.0, 0.0]] * 2


def test_missing_unet_folder(inverse_copy):
    shutil.rmtree(inverse_copy / "unet")
    _raises(inverse_copy, r"missing unet/")


def test_not_a_folder_and_missing_model_index(tmp_path, inverse_copy):
    _raises(tmp_path / "absent", "not a folder")
    (inverse_copy / "model_index.json").unlink()
    _raises(inverse_copy, "missing model_index.json")


def test_unknown_config_keys(inverse_copy, forward_copy):
    _edit_json(inverse_copy / "unet" / "config.json", context_dropout=0.1)
    _raises(inverse_copy, r"unet/config.json: unknown config keys \['context_dropout'\]")
    _edit_json(forward_copy / "env_encoder" / "config.json", use_attention=True)
    _raises(forward_copy, r"env_encoder/config.json: unknown config keys \['use_attention'\]")


def test_vae_of_the_wrong_kind(inverse_copy):
    _edit_json(inverse_copy / "vae" / "config.json", _class_name="AutoencoderKL")
    _raises(inverse_copy, "vae/ holds a AutoencoderKL, expected AutoencoderKLTemporalDecoder")


def test_scheduler_and_unet_of_other_kinds(inverse_copy, tmp_path):
    other = Path(shutil.copytree(inverse_copy, tmp_path / "other"))
    _edit_json(inverse_copy / "scheduler" / "scheduler_config.json", _class_name="DDIMScheduler")
    _raises(inverse_copy, "scheduler/ holds a DDIMScheduler")
    _edit_json(other / "unet" / "config.json", _class_name="UNetSpatioTemporalConditionModel")
    _raises(other, "unet/ holds a UNetSpatioTemporalConditionModel")


def test_weights_that_do_not_fit_the_config(inverse_copy, tmp_path):
    weights = inverse_copy / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state.pop("conv_out.bias")
    save_file(state, str(weights))
    _raises(inverse_copy, r"unet/ weights do not fit its config: missing \['conv_out.bias'\]")
    other = Path(shutil.copytree(FIXTURES / "inverse", tmp_path / "other"))
    _edit_json(other / "unet" / "config.json", in_channels=12)
    _raises(other, "weights do not fit its config: .*wrong shape")


def test_env_encoder_listed_but_absent(forward_copy):
    shutil.rmtree(forward_copy / "env_encoder")
    _raises(forward_copy, "missing env_encoder/")


def _rewrite_lora(folder: Path, change) -> Path:
    path = folder / "lora" / LORA_FILE
    save_file(change(load_file(str(path))), str(path))
    return path


def test_lora_for_another_model(forward_copy, tmp_path):
    def rename(sd):  # move one layer's down and up weights to a module path this UNet does not have
        first = next(iter(sd))
        module = first[: first.index(".lora")]
        return {(k.replace(module, "unet.transformer_blocks.7.attn1.to_q") if k.startswith(module + ".") else k): v
                for k, v in sd.items()}

    path = _rewrite_lora(forward_copy, rename)
    with pytest.raises(LoraMismatchError, match="has no module 'transformer_blocks.7.attn1.to_q'") as info:
        load_diffusion_renderer(forward_copy)
    assert info.value.path == str(path)

    other = Path(shutil.copytree(FIXTURES / "forward", tmp_path / "other"))

    def widen(sd):
        return {k: (torch.zeros(v.shape[0], v.shape[1] * 2) if ".lora.down." in k else v) for k, v in sd.items()}

    path = _rewrite_lora(other, widen)
    with pytest.raises(LoraMismatchError, match="do not fit the layer"):
        load_diffusion_renderer(other)


def test_lora_required_but_absent_and_unreadable(inverse_copy, forward_copy):
    _raises(inverse_copy, "no lora/pytorch_lora_weights.safetensors", lora=True)
    (forward_copy / "lora" / LORA_FILE).write_bytes(b"not safetensors")
    with pytest.raises(LoraMismatchError, match="cannot read the LoRA weights"):
        load_diffusion_renderer(forward_copy)


@torch.no_grad()
def test_lora_key_formats_and_scale(forward_copy):
    """peft-named keys without the unet. prefix load the same LoRA; scale 0 gives the plain UNet exactly."""
    ref = load_file(str(FIXTURES / "reference_forward.safetensors"))
    args = (ref["unet.input"], ref["unet.timestep"], [ref["unet.tokens0"], ref["unet.tokens1"]],
            torch.tensor([[6.0, 127.0, 0.0]]))
    diffusers_named = load_diffusion_renderer(FIXTURES / "forward").unet(*args).sample
    _rewrite_lora(forward_copy, lambda sd: {k.removeprefix("unet.").replace(".lora.down.", ".lora_A.")
                                            .replace(".lora.up.", ".lora_B."): v for k, v in sd.items()})
    peft_named = load_diffusion_renderer(forward_copy).unet(*args).sample
    torch.testing.assert_close(peft_named, diffusers_named, atol=0, rtol=0)
    unscaled = load_diffusion_renderer(forward_copy, lora_scale=0.0).unet(*args).sample
    plain = load_diffusion_renderer(forward_copy, lora=False).unet(*args).sample
    torch.testing.assert_close(unscaled, plain, atol=0, rtol=0)
    assert float((plain - diffusers_named).abs().max()) > 0.01


def test_config_the_unet_cannot_honour(inverse_copy):
    _edit_json(inverse_copy / "unet" / "config.json", temporal_cross_attention_dim=16)
    _raises(inverse_copy, "unet/config.json describes no buildable model: temporal_cross_attention_dim 16")
