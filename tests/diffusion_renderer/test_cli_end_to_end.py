"""Issue #24 through the command line: DiffusionRenderer folders as ``--model DIR`` of ``inverse``, ``relight``,
``forward`` and ``autolabel`` (sharded), end to end on CPU with the tiny fixture checkpoints, and broken folders
refused with exit 2 and one line naming the folder.

The video is 40 frames of 96x160 (two 24-frame windows, not square). Small ``--size`` and ``--steps 1`` keep it
fast; a spy on the sampler's ``denoise`` checks that ``--size`` / ``--steps`` reach BOTH models of a relight and
that a DiffusionRenderer folder keeps its own defaults (20 steps, 24 / 6 frame windows) when they are not given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.io import Clip, ClipMeta, read_clip, read_video, write_clip, write_video
from neural_render.pipelines.diffusion_renderer import DiffusionRendererPipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diffusion_renderer"
INVERSE, FORWARD = FIXTURES / "inverse", FIXTURES / "forward"
T, H, W = 40, 96, 160

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frames(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """(t, h, w, 3) uint8: moving smooth gradients plus a little noise (not constant, not pure noise)."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = [np.stack([40 + 150 * x / w + 2 * k, 60 + 120 * y / h, np.full((h, w), 100.0 + k)], -1) for k in range(t)]
    return np.clip(np.stack(frames) + g.normal(0, 6, (t, h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dr_cli") / "video.mp4"
    write_video(path, _frames(T, H, W, 0), fps=12.0, lossless=True)
    return path


@pytest.fixture
def denoise_calls(monkeypatch) -> list[dict]:
    """Every DiffusionRendererPipeline.denoise call: its kind, steps, latent (h, w), window and overlap."""
    calls, original = [], DiffusionRendererPipeline.denoise

    def spy(self, cond, tokens, context=None, num_inference_steps=None, guidance_scale=None, generator=None,
            latents=None, window=None, overlap=0, progress=False):
        calls.append({"kind": self.settings.kind, "steps": num_inference_steps, "latent": tuple(cond.shape[-2:]),
                      "window": window, "overlap": overlap})
        return original(self, cond, tokens, context, num_inference_steps, guidance_scale, generator, latents, window,
                        overlap, progress)

    monkeypatch.setattr(DiffusionRendererPipeline, "denoise", spy)
    return calls


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("neural-render: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_inverse_command_runs_a_diffusion_renderer_folder(video, tmp_path, denoise_calls, capsys):
    out = tmp_path / "gbuffers"
    argv = ["inverse", str(video), "--out", str(out), "--model", str(INVERSE), "--size", "128", "--steps", "1",
            "--passes", "normal", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 window(s), processed at 128x64" in capsys.readouterr().out
    clip = read_clip(out)
    normal = clip.gbuffer.normal
    assert normal.shape == (1, T, 3, H, W) and clip.rgb.shape == (1, T, 3, H, W)
    assert bool(torch.isfinite(normal).all()) and float(normal.std()) > 1e-3
    torch.testing.assert_close(normal.norm(dim=2), torch.ones(1, T, H, W), atol=2e-3, rtol=0)  # EXR half floats
    assert bool((clip.gbuffer.mask == 1).all())
    info = json.loads((out / "meta.json").read_text())["extra"]["inverse"]
    assert info["model"] == str(INVERSE) and info["processing_size"] == [64, 128] and info["steps"] == 1
    assert (info["window"], info["overlap"], info["windows"]) == (24, 6, [[0, 24], [16, 40]])  # the model's defaults
    assert info["passes"] == ["normal", "mask"] and info["native_size"] == 512
    assert (out / "previews" / "normal.mp4").is_file() and (out / "contact_sheet.png").is_file()
    assert denoise_calls == [{"kind": "inverse", "steps": 1, "latent": (32, 64), "window": 24, "overlap": 6}]


def test_relight_command_passes_size_and_steps_to_both_models(video, tmp_path, denoise_calls, capsys):
    out = tmp_path / "relit.mp4"
    argv = ["relight", str(video), "--model", str(FORWARD), "--inverse-model", str(INVERSE), "--envmap",
            "blender_studio", "--rotate", "40,10,5", "--size", "64", "--steps", "1", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "inverse step processed at 64x64" in capsys.readouterr().out
    relit, _ = read_video(out)
    sbs, _ = read_video(out.with_name("relit.side_by_side.mp4"))
    assert relit.shape == (T, H, W, 3) and sbs.shape == (T, H, 2 * W, 3)
    assert float(relit.astype(np.float32).std()) > 1.0  # a real render, not a constant frame
    kinds = [c["kind"] for c in denoise_calls]
    assert kinds == ["inverse"] * 5 + ["forward"]  # one sampling run per G-buffer pass, then the render
    assert all(c["steps"] == 1 and c["latent"] == (32, 32) and (c["window"], c["overlap"]) == (24, 6)
               for c in denoise_calls), denoise_calls


def _gbuffer_clip(root: Path, t: int = 4, h: int = 48, w: int = 80) -> Path:
    from neural_render.demo.scene import demo_scene

    scene = demo_scene(t, w, h)
    write_clip(root / "clip", Clip(None, scene.gbuffer, scene.camera, ClipMeta.for_camera(scene.camera)),
               preview_mp4=False)
    return root / "clip"


def test_forward_command_size_steps_and_the_model_defaults(tmp_path, denoise_calls, capsys, monkeypatch):
    clip = _gbuffer_clip(tmp_path)
    out = tmp_path / "render"
    base = ["forward", str(clip), "--envmap", "blender_studio", "--model", str(FORWARD)]
    assert main([*base, "--size", "64", "--steps", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    rendered = read_clip(out)
    assert rendered.rgb.shape == (1, 4, 3, 48, 80) and bool(torch.isfinite(rendered.rgb).all())
    assert denoise_calls == [{"kind": "forward", "steps": 1, "latent": (32, 32), "window": 24, "overlap": 6}]
    # without --steps / --size the folder's own defaults: 20 Euler steps at the reference's 512 px (shorter side);
    # stopped before any work at that size (its VAE's attention at 512x896 px would take minutes here)

    class Stop(Exception):
        pass

    def encode(self, gbuffers, env, encode_chunk_size=None):
        denoise_calls.append({"processing": tuple(gbuffers["basecolor"].shape[-2:])})
        return torch.zeros(1, 4, 20, 2, 2), []

    def stop(self, cond, *args, **kwargs):
        denoise_calls.append({"steps": args[2] if len(args) > 2 else kwargs.get("num_inference_steps")})
        raise Stop

    monkeypatch.setattr(DiffusionRendererPipeline, "encode_forward", encode)
    monkeypatch.setattr(DiffusionRendererPipeline, "denoise", stop)
    with pytest.raises(Stop):
        main([*base, "--out", str(tmp_path / "default.mp4")])
    assert denoise_calls[-2:] == [{"processing": (512, 896)}, {"steps": 20}]  # 48x80 px -> shorter side 512
    # the toolkit's forward model renders at the input size: --size is refused there, naming the folder
    assert main(["forward", str(clip), "--envmap", "blender_studio", "--size", "64", "--out",
                 str(tmp_path / "tk.mp4")]) == EXIT_BAD_INPUT
    assert "takes no processing size" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "tk.mp4").exists() and not (tmp_path / "default.mp4").exists()


def test_autolabel_with_a_diffusion_renderer_folder_two_shards(tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "in"
    for i in range(2):
        write_video(inputs / f"v{i}.mp4", _frames(3, 24, 40, i + 1), fps=8.0, lossless=True)
    argv = ["autolabel", str(inputs), "--out", str(tmp_path / "out"), "--model", str(INVERSE), "--size", "64",
            "--steps", "1", "--passes", "normal", "--accelerator", "cpu"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, mine in (("1", {"v1"}), ("0", {"v0", "v1"})):
        monkeypatch.setenv("RANK", rank)
        assert main(argv) == 0, capsys.readouterr().err
        done = {p.name for p in (tmp_path / "out").iterdir() if (p / "meta.json").is_file()}
        assert done == mine  # rank r labels clips r, r + 2, ...
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 2, "failed": 0, "pending": 0}
    assert (manifest["spec"]["window"], manifest["spec"]["overlap"]) == (24, 6)  # the model's, recorded resolved
    for cid in ("v0", "v1"):
        clip = read_clip(tmp_path / "out" / cid)
        assert clip.gbuffer.normal.shape == (1, 3, 3, 24, 40) and bool(torch.isfinite(clip.gbuffer.normal).all())
    monkeypatch.setenv("RANK", "0")
    assert main([*argv, "--window", "8"]) == EXIT_BAD_INPUT  # another window than the recorded one: refused
    assert "other settings (window)" in _error_line(capsys.readouterr().err)


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _lora_for_another_model(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    from neural_render.models.diffusion_renderer.lora import LORA_FILE

    path = folder / "lora" / LORA_FILE
    sd = load_file(str(path))
    module = next(iter(sd)).split(".lora")[0]
    save_file({(k.replace(module, "unet.transformer_blocks.7.attn1.to_q") if k.startswith(module + ".") else k): v
               for k, v in sd.items()}, str(path))


BROKEN = {  # name: (fixture, how it is broken, the words of the error)
    "missing_unet": ("inverse", lambda d: shutil.rmtree(d / "unet"), "names the component folder(s) unet, which are "
                                                                      "missing"),
    "unknown_config_keys": ("inverse", lambda d: _edit_json(d / "unet" / "config.json", context_dropout=0.1),
                            "unknown config keys ['context_dropout']"),
    "vae_of_the_wrong_kind": ("inverse", lambda d: _edit_json(d / "vae" / "config.json", _class_name="AutoencoderKL"),
                              "expected AutoencoderKLTemporalDecoder"),
    "lora_for_another_model": ("forward", _lora_for_another_model, "has no module 'transformer_blocks.7.attn1.to_q'"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_folders_exit_2_with_one_line_naming_the_folder(name, video, tmp_path, capsys):
    kind, breaks, words = BROKEN[name]
    folder = Path(shutil.copytree(FIXTURES / kind, tmp_path / f"dr_{name}"))
    breaks(folder)
    out = tmp_path / "out.mp4"
    if kind == "inverse":
        argv = ["inverse", str(video), "--out", str(tmp_path / "out"), "--model", str(folder), "--size", "64"]
    else:
        argv = ["relight", str(video), "--model", str(folder), "--inverse-model", str(INVERSE), "--envmap",
                "blender_studio", "--size", "64", "--out", str(out)]
    assert main(argv) == EXIT_BAD_INPUT
    line = _error_line(capsys.readouterr().err)
    assert words in line and str(folder) in line, line
    assert not (tmp_path / "out").exists() and not out.exists()


CUBE = "".join(f"v {x} {y} {z}\n" for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)) + \
    "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n"


def test_a_folder_of_the_other_kind_or_an_unsupported_command_exit_2(video, tmp_path, capsys):
    mesh = tmp_path / "mesh" / "cube.obj"
    mesh.parent.mkdir()
    mesh.write_text(CUBE)
    cases = [(["relight", str(video), "--model", str(INVERSE), "--inverse-model", str(INVERSE), "--envmap",
               "blender_studio", "--out", str(tmp_path / "a.mp4")], "inverse checkpoint where a forward one", INVERSE),
             (["inverse", str(video), "--out", str(tmp_path / "b"), "--model", str(FORWARD)],
              "forward checkpoint where an inverse one", FORWARD),
             (["insert", str(video), "--mesh", str(mesh), "--at", "0,0,-3", "--scale", "0.5", "--envmap",
               "blender_studio", "--model", str(FORWARD), "--out", str(tmp_path / "c.mp4")],
              "not supported yet", FORWARD)]
    for argv, words, folder in cases:
        assert main(argv) == EXIT_BAD_INPUT, argv
        line = _error_line(capsys.readouterr().err)
        assert words in line and str(folder) in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh"]  # nothing written
