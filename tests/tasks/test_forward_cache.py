"""ForwardCacheTask: the data add one object's exact normals as the stand-in cache, a training step updates ONLY the
injection projection and the LoRA, and the exported pipeline reloads with both (cache-injection fine-tuning)."""

import pytest
import torch

from neural_render.data.forward_data import forward_cond_channels
from neural_render.data_assets import envmap_path
from neural_render.io.hdr import load_envmap
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.tasks.base import make_backbone
from neural_render.tasks.forward_cache import CacheForwardDataModule, ForwardCacheTask

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from neural_render.synth.dataset import SynthJob, prepare_output, render_one_clip
    from neural_render.synth.scene import SynthConfig

    root = tmp_path_factory.mktemp("synth")
    env = load_envmap(envmap_path("kiara_1_dawn"))
    cfg = SynthConfig(width=16, height=16, num_frames=4, spp=2, max_depth=2, ground_prob=1.0, min_objects=2,
                      max_objects=3, motion_prob=0.0, spawn_prob=0.0)
    job = SynthJob(str(root / "data"), cfg, 7, [str(envmap_path("kiara_1_dawn"))])
    prepare_output(job, [env], 1)
    render_one_clip(job, 0, [env], {})
    return root / "data"


def task(lora: bool = True) -> ForwardCacheTask:
    codec = PixelUnshuffleCodec(2)
    backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(12, True), lora_rank=2 if lora else 0)
    return ForwardCacheTask(backbone=backbone, denoiser=Denoiser("x0"), codec=codec, ema_decay=None, lr=1e-2,
                            window=4, overlap=2, cache_prob=1.0)


def batch_of(dataset):
    data = CacheForwardDataModule(train_roots=str(dataset), num_frames=4, gbuffer_dropout=0.0, batch_size=1,
                                  min_pixels=1)
    data.setup()
    return next(iter(data.train_dataloader()))


def test_data_give_one_objects_exact_normals(dataset):
    from neural_render.io.clip import read_clip, read_meta
    from neural_render.synth.dataset import read_object_ids

    batch = batch_of(dataset)
    mask, normal = batch["cache_mask"], batch["cache_normal"]
    assert mask.shape == (1, 4, 1, 16, 16) and normal.shape == (1, 4, 3, 16, 16)
    assert float(mask.sum()) > 0
    ids = torch.stack([torch.from_numpy(read_object_ids(dataset / "clip_000000", t)).long() for t in range(4)])
    picked = torch.unique(ids.reshape(4, 16, 16)[mask[0, :, 0] > 0])
    ground = [o["id"] for o in read_meta(dataset / "clip_000000").extra["synth"]["objects"] if o["kind"] == "ground"]
    assert picked.numel() == 1 and int(picked) not in ground and int(picked) > 0  # one object, never the ground
    exact = read_clip(dataset / "clip_000000", passes=["normal"]).gbuffer.normal
    assert torch.equal(normal, exact * mask)


def test_training_step_updates_only_injection_and_lora(dataset, tmp_path):
    system = task()
    assert all(n.startswith("injection.") or "lora_" in n for n in system.trainable_names)
    assert any(n.startswith("injection.") for n in system.trainable_names)
    assert any("lora_" in n for n in system.trainable_names)
    before = {n: p.detach().clone() for n, p in system.named_parameters()}
    optimizer = system.configure_optimizers()["optimizer"]
    batch = batch_of(dataset)
    system.train()
    for _ in range(2):  # LoRA B and the projection start at zero: the second step moves lora_A as well
        loss = system.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {n for n, p in system.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(system.trainable_names)
    assert any(n.startswith("injection.") for n in changed)
    assert not system.injection.is_zero

    pipe = system.pipeline()
    pipe.save_pretrained(tmp_path / "model")
    from neural_render.pipelines.insert import CacheForwardPipeline

    loaded = CacheForwardPipeline.from_pretrained(tmp_path / "model")
    assert loaded.injection is not None
    assert torch.equal(loaded.injection.proj.weight, system.injection.proj.weight)
    assert (tmp_path / "model" / "lora").is_dir()


def test_no_cache_in_batch_means_no_injection(dataset):
    system = task(lora=False)
    assert system.trainable_names == ["injection.proj.weight", "injection.proj.bias"]
    batch = batch_of(dataset)
    plain = {k: v for k, v in batch.items() if not k.startswith("cache_")}
    system.eval()
    with torch.no_grad():
        _, _, _, masks = system.make_batch(plain)
        assert "added" not in masks
        _, _, _, masks = system.make_batch(batch)
        assert masks["added"]["token_add"].abs().sum() == 0  # fresh projection: zeros


def test_yaml_config_fine_tunes_a_saved_forward_model(dataset, tmp_path):
    """configs/task/forward_cache.yaml through `neural-render fit`'s LightningCLI: base model folder -> 1 step ->
    export."""
    from pathlib import Path

    from neural_render.pipelines.forward import ForwardPipeline
    from neural_render.pipelines.insert import CacheForwardPipeline
    from neural_render.tasks.fit_cli import build_cli

    codec = PixelUnshuffleCodec(2)
    backbone = make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(12, True))
    base = tmp_path / "base"
    forward_config = {"with_prior": True, "residual": True, "window": 4, "overlap": 2}
    ForwardPipeline(backbone, Denoiser("x0"), codec, None, forward_config=forward_config).save_pretrained(base)
    root = Path(__file__).resolve().parents[2]
    argv = ["--config", str(root / "configs/trainer/cpu_smoke.yaml"),
            "--config", str(root / "configs/task/forward_cache.yaml"),
            *[f"--{p}.init_args.model_dir={base}" for p in ("backbone", "codec", "denoiser")],
            "--backbone.init_args.lora_rank", "2", "--data.init_args.train_roots", str(dataset),
            "--data.init_args.source_roots", f'["{dataset}"]', "--data.init_args.batch_size", "1",
            "--data.init_args.max_train_clips", "1", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
            "--trainer.default_root_dir", str(tmp_path / "logs"), "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false"]
    cli = build_cli(argv)
    assert isinstance(cli.model, ForwardCacheTask)
    assert all(n.startswith("injection.") or "lora_" in n for n in cli.model.trainable_names)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.model.export(tmp_path / "out")
    loaded = CacheForwardPipeline.from_pretrained(tmp_path / "out")
    assert loaded.injection is not None and loaded.forward_config["window"] == 4


def test_region_weight_emphasises_the_cached_object(dataset):
    system = task(lora=False)
    system.region_weight = 4.0
    batch = batch_of(dataset)
    system.eval()
    with torch.no_grad():
        x0, _, _, masks = system.make_batch(batch)
    weight = masks["loss_mask"]
    assert weight.shape == (x0.shape[0], x0.shape[1], 1, *x0.shape[3:])
    assert float(weight.min()) == 1.0 and 1.0 < float(weight.max()) <= 5.0
    empty = dict(batch, cache_mask=torch.zeros_like(batch["cache_mask"]))
    with torch.no_grad():
        assert float(system.make_batch(empty)[3]["loss_mask"].max()) == 1.0


def test_regenerated_scene_matches_the_clips_object_ids(dataset):
    from neural_render.raster import rasterize
    from neural_render.synth.dataset import read_object_ids, regenerate_scene

    scene = regenerate_scene(dataset / "clip_000000")
    _, ids = rasterize(scene.meshes, scene.camera, return_ids=True)
    stored = torch.stack([torch.from_numpy(read_object_ids(dataset / "clip_000000", t)) for t in range(4)])
    assert torch.equal(ids[0], stored)


def test_shadow_data_are_the_picked_objects_env_occlusion(dataset):
    from neural_render.io.clip import read_clip, read_clip_envmap
    from neural_render.raster.shadow import env_occlusion
    from neural_render.synth.dataset import read_object_ids, regenerate_scene

    data = CacheForwardDataModule(train_roots=str(dataset), num_frames=4, gbuffer_dropout=0.0, batch_size=1,
                                  min_pixels=1, shadow=True)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    shadow, mask = batch["cache_shadow"], batch["cache_mask"]
    assert shadow.shape == mask.shape and float(shadow.min()) >= 0.0 and float(shadow.max()) <= 1.0
    clip = dataset / "clip_000000"
    ids = torch.stack([torch.from_numpy(read_object_ids(clip, t)).long() for t in range(4)]).reshape(4, 16, 16)
    picked = int(torch.unique(ids[mask[0, :, 0] > 0])[0])
    scene, g = regenerate_scene(clip), read_clip(clip, rgb=False).gbuffer
    expected = env_occlusion([scene.meshes[picked - 1]], scene.camera, g.depth, g.normal, g.mask,
                             read_clip_envmap(clip))
    assert torch.equal(shadow, expected) and float(expected.max()) > 0.0
    system = ForwardCacheTask(backbone=make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True,
                                                     seed=0, cond_channels=forward_cond_channels(12, True)),
                              denoiser=Denoiser("x0"), codec=PixelUnshuffleCodec(2), ema_decay=None, window=4,
                              overlap=2, injection={"shadow": True})
    system.eval()
    with torch.no_grad():
        assert system.make_batch(batch)[3]["added"]["token_add"].abs().sum() == 0  # fresh: zeros
        system.injection.proj.weight.fill_(0.01)
        assert system.make_batch(batch)[3]["added"]["token_add"].abs().sum() > 0
    light = ForwardCacheTask(backbone=make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True,
                                                    seed=0, cond_channels=forward_cond_channels(12, True)),
                             denoiser=Denoiser("x0"), codec=PixelUnshuffleCodec(2), ema_decay=None, window=4,
                             overlap=2, injection={"shadow": True, "shadow_light": True})
    light.eval()
    with torch.no_grad():
        light.injection.proj.weight.fill_(0.01)
        assert light.make_batch(batch)[3]["added"]["token_add"].abs().sum() > 0  # the prior is in the batch
        with pytest.raises(Exception, match="prior"):
            light.make_batch({k: v for k, v in batch.items() if k != "prior"})
    with torch.no_grad(), pytest.raises(Exception, match="cache_shadow"):
        system.make_batch({k: v for k, v in batch.items() if k != "cache_shadow"})


def test_received_shadow_data_add_the_scenes_shadow_on_the_object(dataset):
    """received_shadow: off the object the map is unchanged; on it, it is mutual_occlusion with the scene WITHOUT
    the object rasterized and lifted frame by frame (as the insert pipeline lifts its scene G-buffer)."""
    from neural_render.io.clip import read_clip, read_clip_envmap
    from neural_render.models.cache3d import Cache3D
    from neural_render.raster import rasterize
    from neural_render.raster.shadow import mutual_occlusion
    from neural_render.synth.dataset import regenerate_scene

    def first_batch(**kwargs):
        data = CacheForwardDataModule(train_roots=str(dataset), num_frames=4, gbuffer_dropout=0.0, batch_size=1,
                                      min_pixels=1, shadow=True, **kwargs)
        data.setup()
        return next(iter(data.train_dataloader()))

    plain, received = first_batch(), first_batch(received_shadow=True)
    mask = received["cache_mask"]
    assert torch.equal(mask, plain["cache_mask"]) and bool((mask > 0).any())
    off = mask == 0
    assert torch.equal(received["cache_shadow"][off], plain["cache_shadow"][off])
    clip = dataset / "clip_000000"
    scene, g = regenerate_scene(clip), read_clip(clip, rgb=False).gbuffer
    _, ids = rasterize(scene.meshes, scene.camera, return_ids=True)
    picked = int(torch.unique(ids[mask > 0])[0])
    without = rasterize([m for i, m in enumerate(scene.meshes) if i != picked - 1], scene.camera)
    lifted = Cache3D(4)
    assert len(lifted.lift_frames(without, scene.camera, (without.depth > 0).float())) == 4
    expected = mutual_occlusion([scene.meshes[picked - 1]], lifted.meshes(), scene.camera, g.depth, g.normal,
                                g.mask, (ids == picked).float(), read_clip_envmap(clip))
    assert torch.equal(received["cache_shadow"], expected)
    on = mask > 0  # the ground the object stands on hides part of the env from it: more than its own shadow
    assert float(received["cache_shadow"][on].mean()) > float(plain["cache_shadow"][on].mean()) + 0.05
    with pytest.raises(Exception, match="received_shadow needs shadow"):
        CacheForwardDataModule(train_roots=str(dataset), num_frames=4, min_pixels=1, received_shadow=True).setup()


def test_shadow_residual_reaches_the_loss_and_its_gain_trains(dataset):
    """make_batch passes x0_add = -gain x the blocked-light latents of the cache shadow and the batch's prior; the
    gain starts at zero (x0_add exact zeros) and a training step moves it."""
    from neural_render.models.cache_injection import blocked_light_latents

    data = CacheForwardDataModule(train_roots=str(dataset), num_frames=4, gbuffer_dropout=0.0, batch_size=1,
                                  min_pixels=1, shadow=True)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert float(batch["cache_shadow"].max()) > 0.0
    system = ForwardCacheTask(backbone=make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True,
                                                     seed=0, cond_channels=forward_cond_channels(12, True)),
                              denoiser=Denoiser("x0"), codec=PixelUnshuffleCodec(2), ema_decay=None, lr=1e-2,
                              window=4, overlap=2, cache_prob=1.0, perturb={"probability": 0.0},
                              injection={"shadow": True, "shadow_residual": True})
    assert "injection.shadow_gain" in system.trainable_names
    system.eval()
    with torch.no_grad():
        masks = system.make_batch(batch)[3]
        blocked = blocked_light_latents(system.encode, batch["cache_shadow"], batch["prior"])
    assert float(blocked.abs().max()) > 0.0
    assert torch.equal(masks["x0_add"], torch.zeros_like(blocked))
    optimizer = system.configure_optimizers()["optimizer"]
    system.train()
    loss = system.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()
    assert float(system.injection.shadow_gain.grad.abs().max()) > 0.0
    optimizer.step()
    assert bool(system.injection.shadow_gain.any())
    system.eval()
    with torch.no_grad():
        gain = system.injection.shadow_gain.view(1, 1, -1, 1, 1)
        assert torch.allclose(system.make_batch(batch)[3]["x0_add"], -gain * blocked)
        with pytest.raises(Exception, match="prior"):
            system.make_batch({k: v for k, v in batch.items() if k != "prior"})
