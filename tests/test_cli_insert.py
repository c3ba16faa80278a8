"""``neural-render insert``: end to end on a synthetic clip with a tiny model built in code; a fresh (zero) injection
is bit-identical to no injection through the whole insertion; bad input exits 2 and writes nothing."""

import json

import numpy as np
import pytest
import torch

from neural_render.cli import main
from neural_render.data.forward_data import forward_cond_channels
from neural_render.data_assets import envmap_path
from neural_render.io.hdr import load_envmap

torch.set_num_threads(1)
T = 4


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import trimesh

    from neural_render.models.cache_injection import CacheInjection
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.pipelines.insert import CacheForwardPipeline
    from neural_render.synth.dataset import SynthJob, prepare_output, render_one_clip
    from neural_render.synth.scene import SynthConfig
    from neural_render.tasks.base import make_backbone

    root = tmp_path_factory.mktemp("insert")
    env = load_envmap(envmap_path("kiara_1_dawn"))
    cfg = SynthConfig(width=24, height=16, num_frames=T, spp=2, max_depth=2, ground_prob=1.0, min_objects=1,
                      max_objects=2)
    job = SynthJob(str(root / "data"), cfg, 3, [str(envmap_path("kiara_1_dawn"))])
    prepare_output(job, [env], 1)
    render_one_clip(job, 0, [env], {})
    backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(12, True))
    pipe = CacheForwardPipeline(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), None,
                                forward_config={"with_prior": True, "residual": True, "window": 4, "overlap": 2},
                                injection=CacheInjection.for_backbone(backbone, 12))
    pipe.save_pretrained(root / "model")
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(root / "cube.glb")
    clip = root / "data" / "clip_000000"
    target = json.loads((clip / "meta.json").read_text())["extra"]["synth"]["trajectory"]["target"]
    return {"root": root, "clip": clip, "model": root / "model", "mesh": root / "cube.glb",
            "at": ",".join(f"{v:.4f}" for v in target)}


def run(assets, out, *extra):
    return main(["insert", str(assets["clip"]), "--mesh", str(assets["mesh"]), f"--at={assets['at']}",
                 "--scale", "0.4", "--material", "basecolor=#cc3311,roughness=0.3,metallic=0", "--gbuffers", "clip",
                 "--model", str(assets["model"]), "--out", str(out), "--no-progress", *extra])


def test_insert_writes_the_video(assets, tmp_path, capsys):
    from neural_render.io import read_video

    out = tmp_path / "out.mp4"
    assert run(assets, out, "--side-by-side") == 0
    frames, _ = read_video(out)
    assert frames.shape[:3] == (T, 16, 24)
    side, _ = read_video(tmp_path / "out.side_by_side.mp4")
    assert side.shape[:3] == (T, 16, 48)
    captured = capsys.readouterr()
    assert "untrained (zero)" in captured.err and "visible in" in captured.out


def insertion_inputs(assets):
    """(clip, scene G-buffer with relative depth, the saved zero-init pipeline, the cube as InsertedObject, env)."""
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.pipelines.insert import CacheForwardPipeline, InsertedObject
    from neural_render.raster import Material

    clip = read_clip(assets["clip"])
    gbuffer = clip.gbuffer.replace(depth=clip.gbuffer.depth / clip.meta.depth_scale)
    pipe = CacheForwardPipeline.from_pretrained(assets["model"])
    obj = InsertedObject(str(assets["mesh"]), Material(0.5, 0.4, 0.0), tuple(float(v) for v in assets["at"].split(",")),
                         0.4)
    return clip, gbuffer, pipe, obj, read_clip_envmap(assets["clip"])


def test_zero_init_injection_leaves_the_insertion_bit_identical(assets):
    from neural_render.pipelines.insert import insert_object

    clip, gbuffer, pipe, obj, env = insertion_inputs(assets)
    assert pipe.injection is not None and pipe.injection.is_zero
    outputs = {}
    for inject in (True, False):
        for blend in ("differential", "full"):
            outputs[inject, blend] = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer,
                                                   depth_scale=clip.meta.depth_scale, inject=inject, blend=blend)
    for blend in ("differential", "full"):
        assert torch.equal(outputs[True, blend].rgb, outputs[False, blend].rgb)
    result = outputs[True, "differential"]
    assert float(result.object_mask.sum()) > 0
    outside = result.object_mask.expand_as(result.rgb) < 0.5
    # differential blend: the input video plus the render difference, the object from the render
    expected = (clip.rgb + result.render - result.background).clamp_min(0.0)
    assert torch.equal(result.rgb[outside], expected[outside])
    # with a trained (non-zero) projection the injection changes the render
    with torch.no_grad():
        pipe.injection.proj.bias.fill_(0.5)
    changed = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, depth_scale=clip.meta.depth_scale,
                            inject=True, blend="full")
    assert float((changed.rgb - outputs[False, "full"].rgb).abs().max()) > 1e-4


def test_shadow_residual_darkens_the_insertion_only_where_the_cache_shadow_blocks_light(assets):
    """A fresh shadow-residual injection is bit-identical to none; a positive gain only darkens, and only where the
    cache's shadow blocks light (the object's received shadow, its cast shadow), never elsewhere."""
    from neural_render.models.cache_injection import CacheInjection
    from neural_render.pipelines.insert import CacheForwardPipeline, insert_object, receiving_scene
    from neural_render.raster.shadow import mutual_occlusion

    clip, gbuffer, pipe, obj, env = insertion_inputs(assets)
    injection = CacheInjection.for_backbone(pipe.backbone, 12, shadow=True, received_shadow=True,
                                            shadow_residual=True)
    pipe = CacheForwardPipeline(pipe.backbone, pipe.denoiser, pipe.codec, None, pipe.forward_config,
                                injection=injection)
    options = dict(depth_scale=clip.meta.depth_scale, blend="full")
    plain = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=False, **options).rgb
    fresh = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, **options).rgb
    assert torch.equal(fresh, plain)
    with torch.no_grad():
        injection.shadow_gain.fill_(0.8)
    result = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, **options)
    darker = result.rgb
    assert float((darker - plain).max()) <= 1e-6  # only darkens
    changed = (plain - darker).amax(2, keepdim=True) > 1e-4
    m = result.gbuffer
    shadow = mutual_occlusion(result.cache.meshes(), receiving_scene("support", result.scene_gbuffer, clip.camera, obj),
                              clip.camera, m.depth, m.normal, m.mask, result.object_mask, env)
    assert bool(changed.any()) and not bool((changed & (shadow <= 0)).any())  # only where the cache shadow is
    half = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, strength=0.5, **options).rgb
    assert float((half - darker).min()) >= -1e-6 and float((plain - half).max()) > 1e-4  # strength scales it


def _no_output(folder) -> bool:
    return sorted(p.name for p in folder.iterdir()) == []


def test_mesh_that_does_not_load_exits_2(assets, tmp_path, capsys):
    bad = tmp_path / "in" / "broken.glb"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00garbage, not a mesh")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main(["insert", str(assets["clip"]), "--mesh", str(bad), f"--at={assets['at']}", "--gbuffers", "clip",
                 "--model", str(assets["model"]), "--out", str(out_dir / "x.mp4"), "--no-progress"])
    assert code == 2
    assert "broken.glb" in capsys.readouterr().err
    assert _no_output(out_dir)


def test_position_behind_the_camera_in_every_frame_exits_2(assets, tmp_path, capsys):
    meta = json.loads((assets["clip"] / "meta.json").read_text())
    poses = np.array(meta["camera_to_world"])
    behind = poses[0, :3, 3] + 2.0 * poses[0, :3, 2]  # +Z of the camera points backwards (OpenGL)
    assert all(float(np.linalg.solve(p[:3, :3], behind - p[:3, 3])[2]) > 0 for p in poses)
    out = tmp_path / "x.mp4"
    code = main(["insert", str(assets["clip"]), "--mesh", str(assets["mesh"]),
                 "--at=" + ",".join(f"{v:.4f}" for v in behind), "--gbuffers", "clip", "--model", str(assets["model"]),
                 "--out", str(out), "--no-progress"])
    assert code == 2
    assert "behind the camera" in capsys.readouterr().err
    assert _no_output(tmp_path)


@pytest.mark.parametrize("bad", [["--material", "basecolor=2,roughness=0.1"], ["--material", "shiny=1"],
                                 ["--scale", "0"], ["--at=1,2"], ["--out", "x.avi"]])
def test_bad_arguments_exit_2(assets, tmp_path, bad):
    args = ["insert", str(assets["clip"]), "--mesh", str(assets["mesh"]), f"--at={assets['at']}", "--gbuffers", "clip",
            "--model", str(assets["model"]), "--out", str(tmp_path / "x.mp4"), "--no-progress"]
    if bad[0].startswith("--at="):
        args[4] = bad[0]
        bad = []
    elif bad[0] == "--out":
        args[-2] = str(tmp_path / bad[1])
        bad = []
    assert main(args + bad) == 2
    assert _no_output(tmp_path)


def test_plain_video_needs_an_envmap(assets, tmp_path, capsys):
    from neural_render.io import write_video

    video = tmp_path / "in.mp4"
    write_video(video, np.full((T, 16, 24, 3), 128, np.uint8), fps=8.0)
    code = main(["insert", str(video), "--mesh", str(assets["mesh"]), "--at=0,0,-3", "--model", str(assets["model"]),
                 "--out", str(tmp_path / "x.mp4"), "--no-progress"])
    assert code == 2
    assert "--envmap" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_eval_insert_scores_every_method_and_a_fresh_injection_equals_none(assets, tmp_path, capsys):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from neural_render.evaluation.insert import load_item
    from neural_render.pipelines.insert import ground_contact

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "insert_eval"
    subprocess.run([sys.executable, str(root / "scripts" / "make_insert_eval_data.py"), "--out", str(data), "--clips",
                    "1", "--size", "32x24", "--frames", str(T), "--spp", "2", "--min-pixels", "4"], check=True,
                   cwd=root, env=dict(os.environ, OMP_NUM_THREADS="1"))
    clip = next((data / "scene").glob("clip_*"))
    obj = load_item(data, clip)[4]
    contact = ground_contact(obj)
    assert contact[0] == obj.at[0] and contact[2] == obj.at[2] and abs(contact[1]) < 1e-4  # rests on the y = 0 ground
    out = tmp_path / "eval.json"
    code = main(["eval", "insert", "--data", str(data), "--model", str(assets["model"]), "--base-model",
                 str(assets["model"]), "--gbuffers", "clip", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert len(result["clips"]) == 1 and result["skipped"] == []
    for region in ("object", "around", "frame"):  # zero-initialised injection: identical to no injection
        assert summary["injection"][region] == summary["no injection (same model)"][region]
        assert np.isfinite(summary["classical paste"][region])
    assert summary["input video (no object)"]["object"] < summary["classical paste"]["object"]
    assert result["comparison"]["rows"] == []  # one clip: no interval


def test_injection_comparisons_are_paired_per_clip():
    from neural_render.evaluation.insert import injection_comparisons

    def clip(inj, plain, paste, unchanged):
        return {"scores": {"injection": dict.fromkeys(("object", "around", "shadow"), inj),
                           "no injection (same model)": dict.fromkeys(("object", "around", "shadow"), plain),
                           "classical paste": dict.fromkeys(("object", "around", "shadow"), paste),
                           "input video (no object)": dict.fromkeys(("object", "around", "shadow"), unchanged)}}

    def verdicts(table):
        return {row["name"]: row for row in table["rows"]}

    # injection 2 dB above no injection in every clip (clearly, even after Holm), level with the paste on average (a
    # tie), and the unchanged input (no object at all) in the table too
    clips = [clip(20.0 + k, 18.0 + k, 20.0 + k + (-1) ** k, 19.0 + k) for k in range(8)]
    rows = verdicts(injection_comparisons(clips))
    assert rows["injection vs no injection (same model) (shadow)"]["verdict"] == "better"
    assert abs(rows["injection vs no injection (same model) (shadow)"]["diff_mean"] - 2.0) < 1e-9
    assert rows["injection vs classical paste (around)"]["verdict"] == "tie"
    assert "injection vs input video (no object) (around)" in rows
    assert not any("base model" in name for name in rows)
    for c in clips:
        c["scores"]["base model"] = dict.fromkeys(("object", "around", "shadow"), 40.0)
    assert verdicts(injection_comparisons(clips))["injection vs base model (object)"]["verdict"] == "worse"


@pytest.mark.parametrize("shadow_light", [False, True])
def test_shadow_injection_gets_the_objects_shadow_map(assets, shadow_light):
    """An injection trained with shadow maps: insert_object ray casts the object's shadow over the composited scene
    and feeds it; zero-init is still bit-identical to no injection, and weights on the shadow latents alone change
    the render (the map reaches the model)."""
    from neural_render.models.cache_injection import CacheInjection
    from neural_render.pipelines.insert import insert_object

    clip, gbuffer, pipe, obj, env = insertion_inputs(assets)
    pipe.injection = CacheInjection.for_backbone(pipe.backbone, 12, shadow=True, shadow_light=shadow_light)
    kwargs = {"depth_scale": clip.meta.depth_scale, "blend": "full"}
    plain = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=False, **kwargs).rgb
    assert torch.equal(insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, **kwargs).rgb, plain)
    with torch.no_grad():
        pipe.injection.proj.weight[:, 12:24].fill_(0.5)  # the shadow latents' inputs only
    shaded = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, **kwargs).rgb
    assert float((shaded - plain).abs().max()) > 1e-4
    with pytest.raises(Exception, match="shadow"):
        pipe.token_add(torch.zeros(1, T, 3, 16, 24), torch.zeros(1, T, 1, 16, 24))


@pytest.mark.parametrize("received_from", ["lifted", "support"])
def test_received_shadow_injection_gets_the_scenes_shadow_on_the_object(assets, received_from):
    """received_shadow: the map fed is the object's shadow on the scene and, on the object's own pixels, the light the
    scene (lifted frame by frame from its G-buffer, or the plane the object stands on) and the object block from it
    (mutual_occlusion)."""
    from neural_render.models.cache3d import Cache3D
    from neural_render.models.cache_injection import CacheInjection
    from neural_render.pipelines.insert import (
        ground_contact,
        insert_object,
        receiving_scene,
    )
    from neural_render.raster.shadow import env_occlusion, mutual_occlusion

    clip, gbuffer, pipe, obj, env = insertion_inputs(assets)
    pipe.injection = CacheInjection.for_backbone(pipe.backbone, 12, shadow=True, received_shadow=True)
    fed, render = [], pipe.render

    def recording_render(*args, **kwargs):
        if "cache" in kwargs:
            fed.append(kwargs["cache"][2])
        return render(*args, **kwargs)

    pipe.render = recording_render
    out = insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, inject=True, depth_scale=clip.meta.depth_scale,
                        blend="full", received_from=received_from)
    shadow, on = fed[0], out.object_mask > 0.5
    if received_from == "lifted":
        lifted = Cache3D(T)
        lifted.lift_frames(out.scene_gbuffer, clip.camera, out.scene_gbuffer.mask)
        scene = lifted.meshes()
    else:
        scene = receiving_scene("support", out.scene_gbuffer, clip.camera, obj)
        assert len(scene) == 1 and torch.allclose(scene[0].world_geometry(0)[0][:, 1],
                                                  torch.tensor(ground_contact(obj)[1]))
    m = out.gbuffer
    assert torch.equal(shadow, mutual_occlusion(out.cache.meshes(), scene, clip.camera, m.depth, m.normal,
                                                m.mask, out.object_mask, env))
    cast = env_occlusion(out.cache.meshes(), clip.camera, m.depth, m.normal, m.mask, env)
    assert torch.equal(shadow[~on], cast[~on]) and float(shadow[on].mean()) > float(cast[on].mean())


def test_estimated_depth_is_anchored_at_the_objects_ground_contact(assets):
    """choose_depth_scale: --depth-scale, then the clip passes' scale, then (relative, estimated depth) the scale that
    puts the surface under the object at its true distance, then the meta's, then the default."""
    from types import SimpleNamespace

    from neural_render.io import read_clip
    from neural_render.pipelines.insert import InsertedObject, choose_depth_scale
    from neural_render.raster import Material
    from neural_render.synth.dataset import read_object_ids

    clip = read_clip(assets["clip"])
    relative = clip.gbuffer.replace(depth=clip.gbuffer.depth / 5.0)  # as if estimated up to an unknown scale
    ground = next(o["id"] for o in clip.meta.extra["synth"]["objects"] if o["kind"] == "ground")
    ids = torch.from_numpy(read_object_ids(assets["clip"], 0)).reshape(16, 24)
    # a pixel of frame 0 with ground all around it: the object will stand on the ground there
    v, u = next((v, u) for v in range(14, 0, -1) for u in range(1, 23)
                if bool((ids[v - 1:v + 2, u - 1:u + 2] == ground).all()))
    ray = clip.camera.ray_directions()[0, 0][:, v, u]
    c2w = clip.camera.camera_to_world[0, 0]
    x, y, z = (c2w[:3, :3] @ (ray * clip.gbuffer.depth[0, 0, 0, v, u] / -ray[2]) + c2w[:3, 3]).tolist()
    standing = InsertedObject(str(assets["mesh"]), Material(0.5, 0.5, 0.0), (x, y + 0.05, z), 0.1)  # lowest: y
    scale, how = choose_depth_scale(None, None, relative, clip.camera, standing, clip.meta)
    assert "ground contact" in how and abs(scale - 5.0) < 0.1
    assert choose_depth_scale(3.0, 7.0, relative, clip.camera, standing, clip.meta) == (3.0, "--depth-scale")
    assert choose_depth_scale(None, 7.0, relative, clip.camera, standing, clip.meta)[0] == 7.0
    behind = InsertedObject(str(assets["mesh"]), Material(0.5, 0.5, 0.0), (x, y, z + 1e4), 0.1)  # never in view
    assert choose_depth_scale(None, None, relative, clip.camera, behind, clip.meta)[0] == clip.meta.depth_scale
    assert choose_depth_scale(None, None, relative, clip.camera, behind, SimpleNamespace(depth_scale=None))[0] is None


def test_unknown_received_from_raises(assets):
    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.insert import insert_object

    clip, gbuffer, pipe, obj, env = insertion_inputs(assets)
    with pytest.raises(NeuralRenderError, match="received_from"):
        insert_object(pipe, clip.rgb, clip.camera, env, obj, gbuffer, received_from="sky")
