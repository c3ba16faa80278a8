"""Sim-to-real tasks and pipelines on tiny models: pair data, IC-LoRA batches/training/export, residual plumbing,
windowing, strength, size errors; anchor propagation (anchors kept, edge/depth control), pair writing, enhancers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from neural_render.data.sim2real_pairs import PairDataset, collate_pairs, find_pairs, read_pair
from neural_render.errors import NeuralRenderError
from neural_render.io.clip import Clip, write_clip
from neural_render.models.backbone import build_backbone
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.pipelines.sim2real import Sim2RealPipeline, from_model_space, to_model_space
from neural_render.pipelines.sim2real_anchors import (
    IdentityAnchors,
    PathTracedAnchors,
    control_video,
    make_enhancer,
    read_source,
)
from neural_render.pipelines.sim2real_data import AnchorPropagationPipeline, anchor_frames, make_pairs
from neural_render.tasks.sim2real import PropagationTask, Sim2RealTask
from neural_render.types import Camera, GBuffer

torch.set_num_threads(1)
SIZE = 16


def _scene(t, seed):
    """(1, t, 3, SIZE, SIZE) linear video: a bright square moving over a gradient (has edges), and its depth."""
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.1, 0.5, SIZE).view(1, 1, 1, 1, SIZE).expand(1, t, 3, SIZE, SIZE).clone()
    base *= torch.rand(1, 1, 3, 1, 1, generator=g) + 0.5
    depth = torch.full((1, t, 1, SIZE, SIZE), 4.0)
    for k in range(t):
        y, x = 3 + k % 5, 4 + k
        base[0, k, :, y:y + 6, x:x + 6] = 0.9
        depth[0, k, :, y:y + 6, x:x + 6] = 2.0
    return base, depth


def _write_pair(folder, t=4, seed=0):
    rendered, depth = _scene(t, seed)
    realistic = (rendered * 0.7 + 0.05).clamp(0, 1)
    camera = Camera.from_fov(50.0, SIZE, SIZE, torch.eye(4).expand(1, t, 4, 4).clone())
    write_clip(folder, Clip(rgb=realistic, gbuffer=GBuffer(depth=depth), camera=camera), preview_mp4=False)
    write_clip(folder / "rendered", Clip(rgb=rendered, gbuffer=GBuffer(), camera=camera), preview_mp4=False)
    return rendered, realistic


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    for i in range(3):
        _write_pair(root / f"clip_{i:06d}", t=4 + i, seed=i)
    return root


def _wan(cond=0):
    return build_backbone("wan", config={"in_channels": 12, "out_channels": 12}, tiny=True, seed=0,
                          cond_channels=cond)


def _ic_task(target="residual", kind="x0", **kw):
    return Sim2RealTask(_wan(), Denoiser(kind), PixelUnshuffleCodec(2), target=target, lora_rank=4, ema_decay=None,
                        **kw)


def test_pair_dataset_windows_flip_and_errors(pairs, tmp_path):
    assert len(find_pairs(pairs)) == 3
    ds = PairDataset(pairs, num_frames=4, with_depth=True, random=False)
    item = ds[2]
    full = read_pair(pairs / "clip_000002", with_depth=True)
    assert item["start"] == 0 and torch.equal(item["realistic"], full["realistic"][:, :4])
    assert item["depth"].shape == (1, 4, 1, SIZE, SIZE)
    flipped = PairDataset(pairs, num_frames=4, random=True, flip=True, seed=3)
    seen_flip = False
    for e in range(6):
        flipped.set_epoch(e)
        it = flipped[2]
        ref = full["rendered"][:, it["start"]:it["start"] + 4]
        seen_flip |= torch.equal(it["rendered"], ref.flip(-1))
        assert torch.equal(it["rendered"], ref) or torch.equal(it["rendered"], ref.flip(-1))
    assert seen_flip
    batch = collate_pairs([ds[0], ds[1]])
    assert batch["rendered"].shape == (2, 4, 3, SIZE, SIZE) and batch["start"].tolist() == [0, 0]
    with pytest.raises(NeuralRenderError, match="pair"):
        find_pairs(tmp_path)


def test_ic_batch_reference_clean_target_residual(pairs):
    task = _ic_task()
    batch = collate_pairs([PairDataset(pairs, 4, random=False)[0]])
    x0, cond, context, masks = task.make_batch(batch)
    ref = task.codec.encode(to_model_space(batch["rendered"]))
    real = task.codec.encode(to_model_space(batch["realistic"]))
    assert cond is None and context is None
    assert torch.equal(x0[:, :4], ref) and torch.allclose(x0[:, 4:], real - ref)
    assert masks["clean_frames"].tolist() == [[True] * 4 + [False] * 4]
    direct = _ic_task(target="direct").make_batch(batch)[0]
    assert torch.equal(direct[:, 4:], real)
    with pytest.raises(NeuralRenderError, match="target"):
        _ic_task(target="sideways")


def test_residual_filter_sigma_filters_only_the_residual_base(pairs, tmp_path):
    from neural_render.render.pixel_filter import pixel_filter

    task = _ic_task(residual_filter_sigma=0.5)
    batch = collate_pairs([PairDataset(pairs, 4, random=False)[0]])
    x0 = task.make_batch(batch)[0]
    ref = task.codec.encode(to_model_space(batch["rendered"]))
    base = task.codec.encode(to_model_space(pixel_filter(batch["rendered"], 0.5)))
    real = task.codec.encode(to_model_space(batch["realistic"]))
    assert not torch.allclose(base, ref)
    assert torch.equal(x0[:, :4], ref) and torch.allclose(x0[:, 4:], real - base)  # the reference stays unfiltered
    pipe = task.pipeline()
    video, _ = _scene(3, 7)
    with torch.no_grad():  # zero prediction: the output is the filtered input
        task.backbone.transformer.proj_out.weight.zero_()
        task.backbone.transformer.proj_out.bias.zero_()
    expect = from_model_space(to_model_space(pixel_filter(video, 0.5)))
    assert torch.allclose(pipe(video).frames, expect, atol=1e-5)
    pipe.save_pretrained(tmp_path / "m")
    assert Sim2RealPipeline.from_pretrained(tmp_path / "m").residual_filter_sigma == 0.5
    with pytest.raises(NeuralRenderError, match="residual_filter_sigma"):
        _ic_task(target="direct", residual_filter_sigma=0.5)


def test_ic_training_lowers_the_loss_and_export_round_trips(pairs, tmp_path):
    task = _ic_task(train_base=True)
    batch = collate_pairs([PairDataset(pairs, 4, random=False)[i] for i in range(2)])
    opt = torch.optim.Adam([p for _, p in task.trainable_named_parameters()], lr=3e-3)
    losses = []
    for step in range(25):
        opt.zero_grad()
        loss = task.training_step(batch, step)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    task.eval()
    live = task.pipeline()
    out = live(batch["rendered"][:1])
    err_model = (out.frames - batch["realistic"][:1]).abs().mean()
    err_input = (batch["rendered"][:1] - batch["realistic"][:1]).abs().mean()
    assert err_model < err_input  # learned the colour transform of the pairs
    task.export(tmp_path / "model", use_ema=False)
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "model")
    assert loaded.target == "residual" and loaded.adapter == "sim2real"
    assert loaded.info["task"] == "Sim2RealTask" and not loaded.is_trained  # no Trainer ran: global_step 0
    assert torch.allclose(loaded(batch["rendered"][:1]).frames, out.frames, atol=1e-6)


def test_residual_zero_prediction_returns_the_input_and_strength():
    task = _ic_task()
    pipe = task.pipeline()
    video, _ = _scene(3, 7)
    with torch.no_grad():
        task.backbone.transformer.proj_out.weight.zero_()
        task.backbone.transformer.proj_out.bias.zero_()
    out = pipe(video)
    assert torch.allclose(out.frames, from_model_space(to_model_space(video)), atol=1e-6)
    assert torch.allclose(out.frames, video, atol=1e-5)
    with torch.no_grad():  # give the LoRA an effect, then strength 0 must equal the base model
        for n, p in task.backbone.named_parameters():
            if "lora_B" in n:
                p.fill_(0.05)
        task.backbone.transformer.proj_out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    full, zero = pipe(video, strength=1.0).frames, pipe(video, strength=0.0).frames
    assert not torch.allclose(full, zero)
    from neural_render.models.lora import disable_lora, enable_lora

    disable_lora(task.backbone)
    base = pipe(video).frames
    enable_lora(task.backbone)
    assert torch.allclose(zero, base, atol=1e-6)
    assert torch.allclose(pipe(video).frames, full)  # scale restored after the call
    with pytest.raises(NeuralRenderError, match="strength"):
        pipe(video, strength=-1)


def test_windows_for_long_videos_and_size_errors():
    pipe = _ic_task(kind="flow").pipeline()
    video, _ = _scene(7, 1)
    one = pipe(video, window=7, num_steps=2, seed=3)
    again = pipe(video, window=100, num_steps=2, seed=3)
    assert one.windows == [(0, 7)] and torch.equal(one.frames, again.frames)
    windowed = pipe(video, window=3, overlap=1, num_steps=2, seed=3)
    assert windowed.windows == [(0, 3), (2, 5), (4, 7)] and windowed.frames.shape == video.shape
    with pytest.raises(NeuralRenderError, match="multiple of the model stride"):
        pipe(torch.rand(1, 2, 3, 18, 16))
    with pytest.raises(NeuralRenderError, match="NaN"):
        pipe(torch.full((1, 2, 3, 16, 16), float("nan")))
    resized = pipe(torch.rand(1, 2, 3, 18, 14), processing_size=(16, 16), num_steps=1)
    assert resized.frames.shape == (1, 2, 3, 18, 14) and resized.processing_size == (16, 16)


def test_control_maps_edges_and_depth():
    video, depth = _scene(2, 0)
    edges = control_video(video, conditioning="edges")
    assert edges.shape == (1, 2, 3, SIZE, SIZE) and set(edges.unique().tolist()) == {-1.0, 1.0}
    assert edges[0, 0, 0, 8, 5] == 1.0 or edges[0, 0, 0, 5, 5] == 1.0 or bool((edges[0, 0, 0, 2:11, 3:12] == 1).any())
    d = control_video(video, depth, conditioning="depth")
    assert torch.allclose(d[0, 0, 0, 0, 0], torch.tensor(1.0)) and d.min() >= -1 and d.max() <= 1
    assert d[0, 0, 0, 5, 6] < d[0, 0, 0, 0, 0]  # the nearer square is darker
    with pytest.raises(NeuralRenderError, match="depth"):
        control_video(video, None, conditioning="depth")
    with pytest.raises(NeuralRenderError, match="conditioning"):
        control_video(video, conditioning="normals")


@pytest.mark.parametrize("conditioning", ("edges", "depth"))
def test_propagation_batch_anchors_and_pipeline(pairs, conditioning):
    task = PropagationTask(_wan(cond=12), Denoiser("x0"), PixelUnshuffleCodec(2), conditioning=conditioning,
                           segment=3, ema_decay=None)
    batch = collate_pairs([PairDataset(pairs, 4, with_depth=True, random=False)[0]])
    x0, cond, _, masks = task.make_batch(batch)
    assert cond.shape == x0.shape and masks["clean_frames"].tolist() == [[True, False, False, True]]
    pipe = task.pipeline()
    frames = anchor_frames(5, 3)
    assert frames == [0, 2, 4]
    video, depth = _scene(5, 2)
    anchors = torch.rand(1, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    out = pipe(video, anchors, frames, depth)
    assert out.shape == video.shape and torch.equal(out[:, frames], anchors)  # anchors kept exactly
    with pytest.raises(NeuralRenderError, match="anchor frames"):
        pipe(video, anchors, [0, 2, 3], depth)


def test_make_pairs_writes_resumable_pair_folders(pairs, tmp_path):
    task = PropagationTask(_wan(cond=12), Denoiser("x0"), PixelUnshuffleCodec(2), segment=4, ema_decay=None)
    task.export(tmp_path / "prop", use_ema=False)
    pipe = AnchorPropagationPipeline.from_pretrained(tmp_path / "prop")
    assert pipe.conditioning == "edges" and pipe.segment == 4 and not pipe.is_trained
    report = make_pairs(pairs, tmp_path / "out", pipe, PathTracedAnchors())
    assert report["written"] == 3 and report["skipped"] == 0
    again = make_pairs(pairs, tmp_path / "out", pipe, PathTracedAnchors())
    assert again["written"] == 0 and again["skipped"] == 3
    made = read_pair(tmp_path / "out" / "pair_clip_000002", with_depth=True)
    source = read_source(pairs / "clip_000002")
    assert torch.equal(made["rendered"], source.rendered)
    for f in anchor_frames(6, 4):  # path-traced anchors: the proxy target at the anchor frames
        assert torch.allclose(made["realistic"][:, f], source.real[:, f])
    assert made["meta"].extra["sim2real_pair"]["enhancer"] == "path-traced"
    assert len(PairDataset(tmp_path / "out", 4)) == 3
    plain = tmp_path / "plain"
    write_clip(plain / "clip", Clip(rgb=source.rendered, gbuffer=GBuffer(), camera=source.camera), preview_mp4=False)
    with pytest.raises(NeuralRenderError, match="path-traced"):
        make_pairs(plain, tmp_path / "out2", pipe, PathTracedAnchors())
    identity = make_pairs(plain, tmp_path / "out3", pipe, IdentityAnchors())
    assert identity["written"] == 1


def test_enhancer_specs():
    assert make_enhancer("identity").name == "identity"
    assert make_enhancer("path-traced").name == "path-traced"
    with pytest.raises(NeuralRenderError, match="unknown enhancer"):
        make_enhancer("magic")
    with pytest.raises(NeuralRenderError, match="model_index"):
        make_enhancer("img2img:/nonexistent/folder")
    with pytest.raises(NeuralRenderError):
        make_enhancer("forward:/nonexistent/folder")


CONFIG_RUNS = {  # task config files (after configs/trainer/cpu_smoke.yaml) -> the backbone kind they build
    ("sim2real.yaml",): "wan",  # the base configs name no backbone: configs/backbone/tiny_wan.yaml goes first
    ("sim2real.yaml", "sim2real_tiny.yaml"): "svd",
    ("sim2real.yaml", "sim2real_tiny.yaml", "sim2real_tiny_wan.yaml"): "wan",
    ("sim2real_propagation.yaml",): "wan",
    ("sim2real_propagation.yaml", "sim2real_propagation_depth.yaml"): "wan",
    ("sim2real_propagation.yaml", "sim2real_propagation_tiny.yaml"): "svd",
}


@pytest.mark.parametrize("files", list(CONFIG_RUNS))
def test_sim2real_configs_fast_dev_run(pairs, tmp_path, files):
    """Every sim2real task config (IC-LoRA, the CPU-sized SVD one and its Wan-transformer variant; anchor
    propagation with edges or depth) trains through `neural-render fit` (one fast_dev_run step on the tiny pairs)
    and exports a pipeline folder."""
    import json
    from pathlib import Path

    from neural_render.cli import main

    configs = Path(__file__).resolve().parents[2] / "configs"
    paths = [configs / "trainer" / "cpu_smoke.yaml"]
    if not any(name.endswith("_tiny.yaml") for name in files):
        paths.append(configs / "backbone" / "tiny_wan.yaml")
    paths += [configs / "task" / name for name in files]
    args = ["fit", *(a for f in paths for a in ("--config", str(f))), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.train_dir", str(pairs),
            "--data.init_args.num_frames", "4", "--data.init_args.batch_size", "1", "--export_dir",
            str(tmp_path / "model")]
    if files[0] == "sim2real_propagation.yaml":
        args += ["--model.init_args.segment", "4"]
    assert main(args) == 0
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    kind = {"wan": ["neural_render.models.backbone.wan", "WanBackbone"],
            "svd": ["neural_render.models.backbone.svd", "SVDBackbone"]}[CONFIG_RUNS[files]]
    assert index["backbone"] == kind  # diffusers' [library, class] (pipelines/folder.py)
    expected = "Sim2RealPipeline" if files[0] == "sim2real.yaml" else "AnchorPropagationPipeline"
    assert index["_class_name"][-1] == expected


def test_sim2real_ic_lora_on_the_pretrained_wan_config(tmp_path):
    """configs/backbone/wan21_t2v_1.3b.yaml + configs/task/sim2real.yaml -- the IC-LoRA run for a machine with the
    real Wan weights and a GPU -- composes and trains, here on a tiny Wan transformer + Wan VAE saved in the same
    local diffusers layout (transformer/, vae/), one fast_dev_run step on the CPU."""
    import json
    from pathlib import Path

    import diffusers

    from neural_render.cli import main
    from neural_render.models.backbone.loading import tiny_wan_config

    pairs = tmp_path / "pairs"
    _write_pair(pairs / "clip_000000", t=5, seed=0)  # the Wan VAE takes 1 + 4k frames
    local = tmp_path / "wan_local"
    torch.manual_seed(0)
    diffusers.WanTransformer3DModel(**tiny_wan_config()).save_pretrained(local / "transformer")
    diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                               latents_mean=[0.0] * 4, latents_std=[1.0] * 4).save_pretrained(local / "vae")
    configs = Path(__file__).resolve().parents[2] / "configs"
    paths = [configs / "trainer" / "cpu_smoke.yaml", configs / "backbone" / "wan21_t2v_1.3b.yaml",
             configs / "task" / "sim2real.yaml"]
    args = ["fit", *(a for f in paths for a in ("--config", str(f))), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--data.init_args.train_dir", str(pairs),
            "--data.init_args.num_frames", "5", "--data.init_args.batch_size", "1",
            "--backbone.init_args.pretrained_dir", str(local), "--codec.init_args.pretrained_dir", str(local),
            "--export_dir", str(tmp_path / "model")]
    assert main(args) == 0
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"][-1] == "Sim2RealPipeline"
    assert index["backbone"] == ["neural_render.models.backbone.wan", "WanBackbone"]
