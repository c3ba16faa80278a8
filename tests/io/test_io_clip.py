"""Clip folder format: exact round trips, frame/pass selection, atomic writes, meta.json validation."""

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_render.errors import NeuralRenderError
from neural_render.io import clip as clip_module
from neural_render.io.clip import (
    CLIP_VERSION,
    Clip,
    ClipMeta,
    is_complete_clip,
    read_clip,
    read_clip_envmap,
    read_meta,
    write_clip,
)
from neural_render.io.hdr import write_hdr
from neural_render.io.video import read_video
from neural_render.render.rotation import euler_to_matrix
from neural_render.render.tonemap import display, srgb_to_linear
from neural_render.types import Camera, GBuffer, look_at

T, H, W = 3, 8, 12


def make_clip(seed=0, hdr=True, **meta_fields) -> Clip:
    g = torch.Generator().manual_seed(seed)
    eyes = torch.tensor([[0.0, 1.0, 4.0], [0.5, 1.2, 3.9], [1.0, 1.4, 3.7]])[:T]
    camera = Camera.from_fov(50.0, W, H, look_at(eyes, torch.zeros(3))[None])
    rgb = torch.rand(1, T, 3, H, W, generator=g) * (20.0 if hdr else 1.0)
    normal = torch.nn.functional.normalize(torch.randn(1, T, 3, H, W, generator=g), dim=2)
    mask = (torch.rand(1, T, 1, H, W, generator=g) > 0.3).float()
    gbuffer = GBuffer(basecolor=torch.rand(1, T, 3, H, W, generator=g), normal=normal,
                      depth=torch.rand(1, T, 1, H, W, generator=g) * 5.0 * mask,
                      roughness=torch.rand(1, T, 1, H, W, generator=g),
                      metallic=torch.rand(1, T, 1, H, W, generator=g), mask=mask)
    meta = ClipMeta.for_camera(camera, fps=30.0, extra={"seed": seed, "generator": "test"}, **meta_fields)
    return Clip(rgb, gbuffer, camera, meta)


def assert_bitwise(a: torch.Tensor, b: torch.Tensor, what=""):
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert a.numpy().tobytes() == b.numpy().tobytes(), what


def test_exr_round_trip_is_exact(tmp_path):
    clip = make_clip()
    written = write_clip(tmp_path / "clip", clip)
    assert is_complete_clip(tmp_path / "clip")
    assert sorted(os.listdir(tmp_path / "clip")) == ["frames", "meta.json", "rgb.mp4"]
    assert sorted(os.listdir(tmp_path / "clip" / "frames")) == ["000000.exr", "000001.exr", "000002.exr"]
    back = read_clip(tmp_path / "clip")
    assert_bitwise(back.rgb, clip.rgb, "rgb")
    assert list(back.gbuffer.passes) == list(clip.gbuffer.passes)
    for name, x in clip.gbuffer.passes.items():
        assert_bitwise(back.gbuffer.passes[name], x, name)
    assert_bitwise(back.camera.intrinsics, clip.camera.intrinsics, "intrinsics")
    assert_bitwise(back.camera.camera_to_world, clip.camera.camera_to_world, "poses")
    assert (back.camera.width, back.camera.height) == (W, H)
    assert back.meta == written == read_meta(tmp_path / "clip")
    assert back.meta.to_json() == (tmp_path / "clip" / "meta.json").read_text()
    assert written.passes == ["rgb", "basecolor", "normal", "depth", "roughness", "metallic", "mask"]
    assert written.rgb_source == "exr" and written.fps == 30.0 and written.extra["seed"] == 0
    valid = (clip.gbuffer.mask > 0.5) & (clip.gbuffer.depth > 0)
    assert written.depth_scale == float(clip.gbuffer.depth[valid].max())
    preview, fps = read_video(tmp_path / "clip" / "rgb.mp4")  # browser preview of sRGB(clamp(rgb))
    assert preview.shape == (T, H, W, 3) and fps == pytest.approx(30.0)
    expected = display(clip.rgb[0]).permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(preview.astype(int) - expected).mean() < 8


def test_mp4_rgb_source_round_trip(tmp_path):
    clip = make_clip(1, hdr=False)
    meta = write_clip(tmp_path / "c", clip, rgb_format="mp4")
    assert meta.rgb_source == "mp4" and "rgb" not in meta.passes
    back = read_clip(tmp_path / "c")
    srgb8 = display(clip.rgb)                                         # what the lossless video must hold
    assert_bitwise(back.rgb, srgb_to_linear(srgb8.float() / 255.0).contiguous(), "rgb from mp4")
    assert torch.allclose(back.rgb, clip.rgb, atol=0.01)               # 8-bit sRGB quantisation only
    for name, x in clip.gbuffer.passes.items():
        assert_bitwise(back.gbuffer.passes[name], x, name)


def test_rgb_only_clip_from_video(tmp_path):
    clip = make_clip(2, hdr=False)
    only_rgb = Clip(clip.rgb, GBuffer(), clip.camera, clip.meta)
    meta = write_clip(tmp_path / "real", only_rgb, rgb_format="mp4")
    assert meta.passes == [] and meta.depth_scale is None and is_complete_clip(tmp_path / "real")
    back = read_clip(tmp_path / "real")
    assert back.gbuffer.passes == {} and back.rgb.shape == (1, T, 3, H, W)
    os.remove(tmp_path / "real" / "rgb.mp4")
    assert not is_complete_clip(tmp_path / "real")


def test_frame_and_pass_selection(tmp_path):
    clip = make_clip(3)
    write_clip(tmp_path / "c", clip, preview_mp4=False)
    assert not (tmp_path / "c" / "rgb.mp4").exists()
    part = read_clip(tmp_path / "c", frames=slice(1, 3), passes=["depth", "normal"])
    assert list(part.gbuffer.passes) == ["normal", "depth"]
    assert_bitwise(part.gbuffer.normal, clip.gbuffer.normal[:, 1:3].contiguous())
    assert_bitwise(part.rgb, clip.rgb[:, 1:3].contiguous())
    assert_bitwise(part.camera.camera_to_world, clip.camera.camera_to_world[:, 1:3].contiguous())
    assert part.meta.num_frames == 2 and part.meta.passes == ["rgb", "normal", "depth"]
    no_rgb = read_clip(tmp_path / "c", frames=slice(None, None, 2), rgb=False)
    assert no_rgb.rgb is None and no_rgb.num_frames == 2 and no_rgb.meta.rgb_source is None
    with pytest.raises(NeuralRenderError, match="not stored"):
        read_clip(tmp_path / "c", passes=["albedo"])
    with pytest.raises(NeuralRenderError, match="empty"):
        read_clip(tmp_path / "c", frames=slice(5, 9))


def test_failed_write_keeps_old_clip_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "clip"
    old = make_clip(4)
    write_clip(target, old, preview_mp4=False)
    real_writer = clip_module.write_frame_exr
    calls = []

    def crash_on_second_frame(path, passes):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("simulated crash mid-write")
        real_writer(path, passes)

    monkeypatch.setattr(clip_module, "write_frame_exr", crash_on_second_frame)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_clip(target, make_clip(5), preview_mp4=False)
    assert len(calls) == 2
    assert os.listdir(tmp_path) == ["clip"]                       # temp folder removed
    assert is_complete_clip(target)
    assert_bitwise(read_clip(target).rgb, old.rgb, "old clip intact")
    calls.clear()
    with pytest.raises(RuntimeError):
        write_clip(tmp_path / "fresh", make_clip(6), preview_mp4=False)
    assert os.listdir(tmp_path) == ["clip"]                       # never a half-written new clip


def test_write_clip_validates_before_writing(tmp_path):
    clip = make_clip(7)
    bad_normal = Clip(clip.rgb, clip.gbuffer.replace(normal=clip.gbuffer.normal * 2.0), clip.camera, clip.meta)
    with pytest.raises(NeuralRenderError, match="unit length"):
        write_clip(tmp_path / "a", bad_normal)
    bad_rgb = Clip(clip.rgb[:, :2], clip.gbuffer, clip.camera, clip.meta)
    with pytest.raises(NeuralRenderError, match="match the camera"):
        write_clip(tmp_path / "a", bad_rgb)
    with pytest.raises(NeuralRenderError, match="neither"):
        write_clip(tmp_path / "a", Clip(None, GBuffer(), clip.camera, clip.meta))
    with pytest.raises(NeuralRenderError, match="rgb_format"):
        write_clip(tmp_path / "a", clip, rgb_format="png")
    clip.meta.extra = {"not json": object()}
    with pytest.raises(NeuralRenderError, match="JSON"):
        write_clip(tmp_path / "a", clip)
    assert list(tmp_path.iterdir()) == []


def _mutated_meta(tmp_path, mutate):
    write_clip(tmp_path / "c", make_clip(8), preview_mp4=False)
    path = tmp_path / "c" / "meta.json"
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return tmp_path / "c"


BAD_META = {
    "wrong version": (lambda d: d.update(version=CLIP_VERSION + 1), "unsupported clip version"),
    "version as string": (lambda d: d.update(version="1"), "unsupported clip version"),
    "wrong format": (lambda d: d.update(format="other.tool"), "not a neural_render clip"),
    "missing fps": (lambda d: d.pop("fps"), "missing field"),
    "missing poses": (lambda d: d.pop("camera_to_world"), "missing field"),
    "pose 3x4": (lambda d: d["camera_to_world"][1].pop(), r"camera_to_world\[1\] must be a 4x4"),
    "too few poses": (lambda d: d["camera_to_world"].pop(), "num_frames=3"),
    "pose not rotation": (lambda d: d["camera_to_world"][0][0].__setitem__(0, 2.0), "not a rotation"),
    "string width": (lambda d: d.update(width="12"), "width must be a positive integer"),
    "negative fps": (lambda d: d.update(fps=-1), "fps"),
    "intrinsics list": (lambda d: d.update(intrinsics=[1, 1, 1, 1]), "intrinsics"),
    "unknown field": (lambda d: d.update(colour="blue"), "unknown field"),
    "bad pass": (lambda d: d.update(passes=["rgb", "albedo"]), "passes"),
    "pass not a string": (lambda d: d.update(passes=[["rgb"]]), "passes"),
    "nan fps": (lambda d: d.update(fps=float("nan")), "fps"),
    "rgb source mismatch": (lambda d: d.update(rgb_source="mp4"), "rgb_source"),
    "bad envmap": (lambda d: d.update(envmap={"path": "sky.hdr", "rotation_deg": [0, 0]}), "rotation_deg"),
    "bad extra": (lambda d: d.update(extra=[1, 2]), "extra"),
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_bad_meta_is_rejected_naming_meta_json(tmp_path, case):
    mutate, match = BAD_META[case]
    clip_dir = _mutated_meta(tmp_path, mutate)
    with pytest.raises(NeuralRenderError, match=match) as info:
        read_clip(clip_dir)
    assert info.value.path == str(clip_dir / "meta.json")
    assert not is_complete_clip(clip_dir)


def test_broken_meta_files_and_frames(tmp_path):
    with pytest.raises(NeuralRenderError, match="no such clip folder"):
        read_clip(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralRenderError, match="missing meta.json"):
        read_meta(tmp_path / "empty")
    write_clip(tmp_path / "c", make_clip(9), preview_mp4=False)
    frame = tmp_path / "c" / "frames" / "000001.exr"
    frame.write_bytes(frame.read_bytes()[:200])                   # truncated frame
    with pytest.raises(NeuralRenderError) as info:
        read_clip(tmp_path / "c")
    assert info.value.path == str(frame)
    (tmp_path / "c" / "meta.json").write_text("{ not json")
    with pytest.raises(NeuralRenderError, match="invalid JSON"):
        read_meta(tmp_path / "c")


def test_envmap_reference_and_rotation(tmp_path):
    sky = np.random.default_rng(0).random((4, 8, 3)).astype(np.float32) * 3
    write_hdr(tmp_path / "skies" / "noon.exr", sky)
    clip = make_clip(10, envmap={"path": "../skies/noon.exr", "rotation_deg": [30.0, -10.0, 5.0]})
    write_clip(tmp_path / "c", clip, preview_mp4=False)
    env = read_clip_envmap(tmp_path / "c")
    assert env.name == "noon"
    np.testing.assert_array_equal(env.image.numpy(), sky.transpose(2, 0, 1))
    assert torch.allclose(env.rotation, euler_to_matrix(30.0, -10.0, 5.0))
    rotation = euler_to_matrix(90.0, 0.0, 0.0).tolist()
    meta = read_meta(tmp_path / "c")
    meta.envmap = {"path": str(tmp_path / "skies" / "noon.exr"), "rotation_deg": [0, 0, 0],
                   "rotation_matrix": rotation}
    assert torch.allclose(read_clip_envmap(tmp_path / "c", ClipMeta.from_json(meta.to_json())).rotation,
                          torch.tensor(rotation))
    write_clip(tmp_path / "plain", make_clip(11), preview_mp4=False)
    assert read_clip_envmap(tmp_path / "plain") is None


@settings(max_examples=25, deadline=None)
@given(angles=st.lists(st.floats(-180, 180), min_size=3, max_size=3),
       position=st.lists(st.floats(-1e4, 1e4, allow_subnormal=True), min_size=3, max_size=3),
       fps=st.floats(0.001, 1000.0), depth_scale=st.one_of(st.none(), st.floats(1e-6, 1e6)),
       frames=st.integers(1, 4))
def test_hypothesis_meta_json_round_trip_is_exact(angles, position, fps, depth_scale, frames):
    pose = torch.eye(4)
    pose[:3, :3] = euler_to_matrix(*angles)
    pose[:3, 3] = torch.tensor(position)
    poses = pose.expand(frames, 4, 4).clone()
    poses[:, 0, 3] += torch.arange(frames) * 0.1
    camera = Camera(torch.tensor([[10.5, 10.25, 6.0, 4.0]]), poses[None], W, H)
    meta = ClipMeta.for_camera(camera, fps=fps, depth_scale=depth_scale, passes=["depth"],
                               envmap={"path": "a.hdr", "rotation_deg": list(angles)})
    again = ClipMeta.from_json(meta.to_json())
    assert again == meta
    assert again.camera().camera_to_world.numpy().tobytes() == camera.camera_to_world.numpy().tobytes()
