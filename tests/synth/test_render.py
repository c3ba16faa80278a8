"""Rendering a generated clip: RGB is Mitsuba's direct render of the frame's scene dict, determinism, the env
rotation Mitsuba sees is EnvMap.rotated's (emitter evaluation and path-traced background), scalar fallback."""

import numpy as np
import pytest
import torch

from neural_render.data_assets import envmap_path
from neural_render.io.hdr import load_envmap
from neural_render.raster import rasterize
from neural_render.render.envmap import env_lookup
from neural_render.synth.render import render_clip
from neural_render.synth.scene import SynthConfig, generate_scene


@pytest.fixture(scope="module")
def env():
    return load_envmap(envmap_path("kiara_1_dawn"))


def small_scene(env, size=32, frames=2, spp=8, seed=11, clip=0, **kw):
    cfg = SynthConfig(width=size, height=size, num_frames=frames, spp=spp, max_depth=4, **kw)
    return generate_scene(cfg, seed, clip, [env])


def direct_render(mi, scene, frame):
    """What a bare Mitsuba script does with the frame's scene dict (fresh builder: no shared cached objects)."""
    from neural_render.synth.mitsuba_scene import FrameBuilder
    scene_dict = FrameBuilder(mi, scene).scene_dict(frame)
    image = mi.render(mi.load_dict(scene_dict), spp=scene.config.spp, seed=scene.frame_seeds[frame])
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)


def test_rgb_is_mitsubas_direct_render_and_everything_is_deterministic(use_variant, env):
    mi = use_variant("llvm_ad_rgb")
    scene = small_scene(env, frames=3, motion_prob=1.0)
    first = render_clip(scene)
    for t in range(3):
        assert torch.equal(first.rgb[0, t], direct_render(mi, scene, t))  # bitwise: no post-processing
    again = render_clip(small_scene(env, frames=3, motion_prob=1.0))
    for name, x in first.gbuffer.passes.items():
        assert torch.equal(x, again.gbuffer.passes[name]), name
    assert torch.equal(first.object_id, again.object_id) and torch.equal(first.flow, again.flow)
    assert torch.equal(first.rgb, again.rgb)
    assert first.rgb.shape == (1, 3, 3, 32, 32) and float(first.rgb.mean()) > 0
    # the synth G-buffer is the rasterizer's G-buffer of the same meshes (one geometry path)
    gb, ids = rasterize(scene.meshes, scene.camera, backend="mitsuba", return_ids=True)
    assert torch.equal(ids, first.object_id)
    for name, x in gb.passes.items():
        assert torch.equal(x, first.gbuffer.passes[name]), name
    other = render_clip(small_scene(env, seed=12, frames=3))
    assert not torch.equal(other.gbuffer.depth, first.gbuffer.depth)


@pytest.mark.parametrize("variant", ["llvm_ad_rgb", "scalar_rgb"])
def test_reused_scene_with_moved_sensor_renders_like_a_fresh_load(use_variant, env, variant):
    """Frames in which no shape changes reuse the loaded scene (sensor pose update only): still bitwise equal."""
    mi = use_variant(variant)
    from neural_render.synth.mitsuba_scene import FrameBuilder

    scene = small_scene(env, size=16, frames=3, spp=4, seed=2, motion_prob=0.0, spawn_prob=0.0, jitter_prob=1.0)
    builder = FrameBuilder(mi, scene)
    first, _ = builder.load(0)
    assert builder.load(1)[0] is first and builder.load(2)[0] is first  # reused, not reloaded
    rendered = render_clip(scene)
    assert not torch.equal(scene.camera.camera_to_world[0, 1], scene.camera.camera_to_world[0, 2])
    for t in range(3):
        assert torch.equal(rendered.rgb[0, t], direct_render(mi, scene, t))


def test_scalar_fallback_renders_the_same_geometry_and_its_own_direct_render(use_variant, env):
    scene = small_scene(env, size=16, frames=2, spp=4)
    use_variant("llvm_ad_rgb")
    llvm = render_clip(scene)
    mi = use_variant("scalar_rgb")
    scalar = render_clip(scene)
    assert scalar.variant == "scalar_rgb"
    assert torch.equal(scalar.object_id, llvm.object_id)
    on = llvm.gbuffer.mask > 0.5
    assert float(((scalar.gbuffer.depth - llvm.gbuffer.depth).abs() / llvm.gbuffer.depth.clamp_min(1e-6))[on].max()) \
        < 1e-5
    assert torch.equal(scalar.gbuffer.basecolor, llvm.gbuffer.basecolor)
    assert torch.equal(scalar.rgb[0, 1], direct_render(mi, scene, 1))
    assert bool(torch.isfinite(scalar.rgb).all()) and float(scalar.rgb.mean()) > 0


def test_mitsuba_sees_exactly_the_rotated_env_map(use_variant, env, tmp_path):
    """The emitter of the scene dict evaluated along our camera rays == EnvMap.rotated(...).lookup, and the
    path-traced background agrees with it (while the unrotated sky does not)."""
    import drjit as dr

    from neural_render.io.clip import read_clip_envmap
    from neural_render.synth.dataset import SynthJob, prepare_output, write_synth_clip
    from neural_render.synth.mitsuba_scene import FrameBuilder

    mi = use_variant("llvm_ad_rgb")
    scene = small_scene(env, size=32, frames=1, spp=64, seed=5, ground_prob=0.0, max_objects=1,
                        env_tilt_deg=30.0)
    assert abs(scene.env_rotation_deg[1]) > 0 or abs(scene.env_rotation_deg[2]) > 0
    rendered = render_clip(scene)
    prepare_output(SynthJob(str(tmp_path), scene.config, 5, []), [env], 1)  # writes envmaps/<name>.exr
    write_synth_clip(tmp_path / "clip_000000", scene, rendered)
    stored = read_clip_envmap(tmp_path / "clip_000000")  # env file + meta.json rotation_matrix
    cam = scene.camera
    c2w = cam.camera_to_world[0, 0]
    dirs = (cam.ray_directions()[0, 0].permute(1, 2, 0).reshape(-1, 3) @ c2w[:3, :3].T).contiguous()
    emitter = mi.load_dict(FrameBuilder(mi, scene).scene_dict(0)).environment()
    si = dr.zeros(mi.SurfaceInteraction3f, dirs.shape[0])
    si.wi = mi.Vector3f(*[mi.Float(-dirs[:, i].contiguous()) for i in range(3)])
    value = emitter.eval(si)
    seen = torch.from_numpy(np.stack([np.array(value.x), np.array(value.y), np.array(value.z)], 1))
    expected = env_lookup(stored, dirs)
    assert float(((seen - expected).abs() / (expected.abs() + 1e-2)).max()) < 1e-3

    # path-traced background pixels (away from the object) vs the pixel-footprint average of the lookup
    sub = 8
    j, i = torch.meshgrid(torch.arange(32 * sub), torch.arange(32 * sub), indexing="xy")
    fx, fy, cx, cy = cam.intrinsics[0].tolist()
    d = torch.stack([((j + 0.5) / sub - cx) / fx, -((i + 0.5) / sub - cy) / fy,
                     -torch.ones_like(j, dtype=torch.float32)], -1)
    world = torch.nn.functional.normalize(d, dim=-1) @ c2w[:3, :3].T

    def footprint(envmap):
        return env_lookup(envmap, world).reshape(32, sub, 32, sub, 3).mean((1, 3)).permute(2, 0, 1)

    mask = rendered.gbuffer.mask[0, 0, 0]
    far = torch.nn.functional.max_pool2d(mask[None, None], 5, 1, 2)[0, 0] < 0.5  # 2 px away from any surface
    assert int(far.sum()) > 300
    rgb = rendered.rgb[0, 0]

    def error(envmap):
        ref = footprint(envmap)
        return float(((rgb - ref).abs() / (ref + 0.05))[:, far].mean())

    from neural_render.types import EnvMap
    right, unrotated = error(stored), error(EnvMap(stored.image, torch.eye(3)))
    assert right < 0.05 and unrotated > 3 * right


def test_envmap_path_in_meta_resolves_inside_a_dataset(tmp_path, use_variant, env):
    from neural_render.io.clip import read_clip_envmap, read_meta
    from neural_render.synth.dataset import SynthJob, prepare_output, render_one_clip

    use_variant("llvm_ad_rgb")
    cfg = SynthConfig(width=16, height=16, num_frames=2, spp=2)
    job = SynthJob(str(tmp_path / "data"), cfg, 4, [str(envmap_path("kiara_1_dawn"))])
    prepare_output(job, [env], 1)
    render_one_clip(job, 0, [env], {})
    clip = tmp_path / "data" / "clip_000000"
    meta = read_meta(clip)
    assert meta.envmap["path"] == "../envmaps/kiara_1_dawn.exr"
    stored = read_clip_envmap(clip)
    assert torch.equal(stored.image, env.image)
    scene = generate_scene(cfg, 4, 0, [env])
    assert torch.equal(stored.rotation, scene.env.rotation)
