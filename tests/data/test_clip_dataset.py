"""ClipDataset over a tiny synthetic dataset: windows, crops (exact intrinsics), kornia resizes, env, aux, collate."""

import pytest
import torch

from neural_render.data.clip_dataset import ClipDataset, collate_clips
from neural_render.errors import NeuralRenderError
from neural_render.io.clip import read_clip_envmap
from neural_render.raster import Mesh, rasterize
from neural_render.render.envmap import env_encodings
from neural_render.synth.scene import generate_scene

SEED = 21


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from neural_render.synth.dataset import SynthJob
    from neural_render.synth.envmap_files import resolve_envmaps
    from neural_render.synth.run import run_synth
    from neural_render.synth.scene import SynthConfig

    out = tmp_path_factory.mktemp("synth") / "data"
    config = SynthConfig(width=32, height=24, num_frames=4, spp=2, max_depth=2, motion_prob=1.0)
    job = SynthJob(str(out), config, SEED, resolve_envmaps("train")[:2])
    run_synth(job, 2, progress=False)
    return out, job


def window_meshes(job, clip_index, start, count):
    from neural_render.synth.dataset import load_inputs
    envs, _ = load_inputs(job)
    scene = generate_scene(job.config, SEED, clip_index, envs)
    return [Mesh(m.vertices, m.faces, m.normals, m.uvs, m.material,
                 m.to_world[start:start + count] if m.to_world.ndim == 3 else m.to_world,
                 None if m.visible is None else m.visible[start:start + count], m.name) for m in scene.meshes]


def test_items_shapes_collate_and_determinism(dataset_dir):
    root, _ = dataset_dir
    ds = ClipDataset(root, num_frames=2, crop=(16, 20), size=(8, 10), env_size=(8, 16), with_aux=True, seed=3,
                     samples_per_clip=3)
    assert len(ds) == 6
    item = ds[1]
    assert item["rgb"].shape == (1, 2, 3, 8, 10)
    assert item["gbuffer"].shape == (1, 2, 8, 10) and item["gbuffer"].validate() is item["gbuffer"]
    assert (item["camera"].width, item["camera"].height) == (10, 8) and item["camera"].num_frames == 2
    assert set(item["env"]) == {"ldr", "log", "dir"} and item["env"]["ldr"].shape == (1, 2, 3, 8, 16)
    assert item["flow"].shape == (1, 2, 2, 8, 10) and item["object_id"].dtype == torch.int64
    again = ClipDataset(root, num_frames=2, crop=(16, 20), size=(8, 10), env_size=(8, 16), with_aux=True, seed=3,
                        samples_per_clip=3)[1]
    assert torch.equal(item["rgb"], again["rgb"]) and item["start"] == again["start"]
    draws = {(ds[i]["start"], ds[i]["camera"].intrinsics[0, 2].item()) for i in range(len(ds))}
    ds.set_epoch(1)
    draws_next = {(ds[i]["start"], ds[i]["camera"].intrinsics[0, 2].item()) for i in range(len(ds))}
    assert len(draws | draws_next) > len(draws)
    batch = collate_clips([ds[0], ds[3]])
    assert batch["rgb"].shape == (2, 2, 3, 8, 10) and batch["gbuffer"].depth.shape == (2, 2, 1, 8, 10)
    assert batch["camera"].intrinsics.shape == (2, 4) and batch["env"]["dir"].shape[0] == 2
    assert batch["clip"] == [ds[0]["clip"], ds[3]["clip"]]


def test_crop_intrinsics_are_exact(dataset_dir):
    root, job = dataset_dir
    ds = ClipDataset(root, num_frames=3, crop=(16, 20), env=None, seed=5, samples_per_clip=4)
    for index in (0, 5):
        item = ds[index]
        clip_index = int(item["clip"][-6:])
        meshes = window_meshes(job, clip_index, item["start"], 3)
        ref = rasterize(meshes, item["camera"], backend="mitsuba")  # our camera must see the cropped pixels
        for name, x in ref.passes.items():
            assert torch.equal(x, item["gbuffer"].passes[name]), name


def test_resize_intrinsics_and_flow_scaling(dataset_dir):
    root, job = dataset_dir
    full = ClipDataset(root, num_frames=2, env=None, with_aux=True, random=False)[0]
    half = ClipDataset(root, num_frames=2, size=(12, 16), env=None, with_aux=True, random=False)[0]
    k_full, k_half = full["camera"].intrinsics[0], half["camera"].intrinsics[0]
    assert torch.allclose(k_half, k_full * 0.5)
    # nearest-exact halving keeps source pixels (2i + 1, 2j + 1) unchanged (no blended depths / normals)
    for name, x in half["gbuffer"].passes.items():
        assert torch.equal(x, full["gbuffer"].passes[name][..., 1::2, 1::2]), name
    # ... which lie a quarter output pixel off the new pixel centres: the rasterized truth agrees almost everywhere
    meshes = window_meshes(job, 0, 0, 2)
    ref = rasterize(meshes, half["camera"], backend="mitsuba", return_ids=True)[1]
    assert float((ref == half["object_id"]).float().mean()) > 0.85
    assert float((ref.gt(0).float() == half["gbuffer"].mask).float().mean()) > 0.85
    # flow in output pixels: the half-size flow is the full-size flow sampled at the same points, halved
    sub = full["flow"][..., 1::2, 1::2]
    assert torch.allclose(half["flow"], sub * 0.5, atol=1e-5)


def test_env_modes(dataset_dir):
    root, _ = dataset_dir
    item = ClipDataset(root, num_frames=2, env="encodings", env_size=(4, 8), random=False)[0]
    env = read_clip_envmap(item["clip"])
    expected = env_encodings(env, item["camera"].camera_to_world, 4, 8)
    for key in ("ldr", "log", "dir"):
        assert torch.equal(item["env"][key], expected[key])
    ref = ClipDataset(root, num_frames=2, env="envmap", random=False)[0]["env"]
    assert torch.equal(ref["image"][0], env.image) and torch.equal(ref["rotation"][0], env.rotation)


def test_bad_arguments(dataset_dir, tmp_path):
    root, _ = dataset_dir
    with pytest.raises(NeuralRenderError):
        ClipDataset(root, num_frames=9)
    with pytest.raises(NeuralRenderError):
        ClipDataset(root, crop=(64, 64))
    with pytest.raises(NeuralRenderError):
        ClipDataset(tmp_path)
    with pytest.raises(NeuralRenderError):
        ClipDataset(root, env="sh")
