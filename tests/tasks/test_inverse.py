"""InverseTask: batches of both modes (targets, condition, context, loss masks), pass choice, learning, pass
selection."""

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.models.pass_embedding import PassEmbedding
from neural_render.pipelines.inverse import (
    InverseRenderingPipeline,
    rgb_to_model,
)
from neural_render.tasks.base import make_backbone
from neural_render.tasks.inverse import InverseTask, input_level_albedo, latent_mask, window_rmse_loss
from neural_render.types import GBuffer
from neural_render.types.gbuffer import PREDICTED_PASSES, depth_scale_of, pack_pass

CODEC = PixelUnshuffleCodec(2)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def demo_batch(frames=4, size=16) -> dict:
    """Two clips of the analytic demo scene (exact G-buffers), rgb = basecolor x a simple lighting term."""
    from neural_render.demo.scene import demo_scene

    g = demo_scene(frames + 1, size, size).gbuffer
    clips = [g.frames(0, frames), g.frames(1, frames + 1)]
    gbuffer = GBuffer(**{k: torch.cat([c.passes[k] for c in clips]) for k in g.passes})
    light = 0.15 + 0.85 * gbuffer.normal[:, :, 1:3].sum(2, keepdim=True).clamp(0, 1)
    rgb = gbuffer.basecolor * light + 0.3 * (1 - gbuffer.mask)  # grey sky behind
    return {"rgb": rgb, "gbuffer": gbuffer, "clip": ["a", "b"], "start": torch.tensor([0, 1])}


def task(mode="per_pass", kind="flow", seed=0, **kw):
    channels = 12 if mode == "per_pass" else 60
    backbone = make_backbone("wan", config={"in_channels": channels, "out_channels": channels, "patch_size": (1, 1, 1)},
                             tiny=True, cond_channels=12, seed=seed)
    embedding = None
    if mode == "per_pass":
        embedding = PassEmbedding(dim=32)
        embedding.reset_parameters(torch.Generator().manual_seed(seed))
    kw.setdefault("ema_decay", None)
    return InverseTask(backbone, Denoiser(kind), CODEC, embedding, mode=mode, **kw)


def test_latent_mask_pools_space_and_groups_causal_frames():
    mask = torch.zeros(1, 5, 1, 4, 4)
    mask[0, 0, 0, 0, 0] = 1  # frame 0, top-left pixel
    mask[0, 3, 0, 3, 3] = 1  # frame 3, bottom-right pixel
    same = latent_mask(mask, 5, 2, 2)
    assert same.shape == (1, 5, 1, 2, 2) and same[0, 0, 0, 0, 0] == 1 and same[0, 3, 0, 1, 1] == 1
    assert float(same.sum()) == 2
    causal = latent_mask(mask, 2, 2, 2)  # Wan-style: frame 0 alone, frames 1-4 together
    assert causal[0, 0, 0].tolist() == [[1, 0], [0, 0]] and causal[0, 1, 0].tolist() == [[0, 0], [0, 1]]


def test_per_pass_batch_targets_context_and_loss_mask():
    system, batch = task(), demo_batch()
    batch["pass_id"] = torch.tensor([PREDICTED_PASSES.index("normal"), PREDICTED_PASSES.index("depth")])
    x0, cond, context, masks = system.make_batch(batch)
    g = batch["gbuffer"]
    assert x0.shape == cond.shape == (2, 4, 12, 8, 8) and context.shape == (2, 1, 32)
    assert torch.equal(cond, CODEC.encode(rgb_to_model(batch["rgb"])))
    assert torch.equal(x0[0], CODEC.encode(pack_pass("normal", g.normal[:1]))[0])
    scale = depth_scale_of(g.depth[1:], g.mask[1:])
    assert torch.equal(x0[1], CODEC.encode(pack_pass("depth", g.depth[1:], scale))[0])
    assert torch.equal(context[0], system.pass_embedding.embed("normal")[0])
    assert torch.equal(context[1], system.pass_embedding.embed("depth")[0])
    lm = masks["loss_mask"]
    assert lm.shape == (2, 4, 1, 8, 8)
    assert torch.equal(lm[0], latent_mask(g.mask, 4, 8, 8)[0]) and 0 < float(lm[0].mean()) < 1  # normal: masked
    assert bool((lm[1] == 1).all())  # depth: background (= 0) is trained too


def test_joint_batch_stacks_every_pass_and_masks_blocks():
    system, batch = task("joint"), demo_batch()
    x0, cond, context, masks = system.make_batch(batch)
    g = batch["gbuffer"]
    assert x0.shape == (2, 4, 60, 8, 8) and cond.shape == (2, 4, 12, 8, 8) and context is None
    scale = depth_scale_of(g.depth, g.mask)
    for i, name in enumerate(PREDICTED_PASSES):
        assert torch.equal(x0[:, :, 12 * i:12 * (i + 1)], CODEC.encode(pack_pass(name, g.passes[name], scale))), name
    lm = masks["loss_mask"]
    assert lm.shape == x0.shape
    depth_block = PREDICTED_PASSES.index("depth")
    assert bool((lm[:, :, 12 * depth_block:12 * (depth_block + 1)] == 1).all())
    assert torch.equal(lm[:, :, :12], latent_mask(g.mask, 4, 8, 8).expand(-1, -1, 12, -1, -1))


def test_pass_loss_weights_scale_each_pass_block_of_the_loss_mask():
    batch = demo_batch()
    plain, weighted = task("joint"), task("joint", pass_loss_weights={"basecolor": 3.0, "depth": 0.5})
    _, _, _, m0 = plain.make_batch(batch)
    _, _, _, m1 = weighted.make_batch(batch)
    for i, name in enumerate(PREDICTED_PASSES):
        block = slice(12 * i, 12 * (i + 1))
        factor = {"basecolor": 3.0, "depth": 0.5}.get(name, 1.0)
        assert torch.equal(m1["loss_mask"][:, :, block], m0["loss_mask"][:, :, block] * factor), name
    batch["pass_id"] = torch.tensor([PREDICTED_PASSES.index("basecolor"), PREDICTED_PASSES.index("normal")])
    per_pass = task(pass_loss_weights={"basecolor": 2.0})
    lm = per_pass.make_batch(batch)[3]["loss_mask"]
    ref = task().make_batch(batch)[3]["loss_mask"]
    assert torch.equal(lm[0], 2.0 * ref[0]) and torch.equal(lm[1], ref[1])
    no_mask = dict(batch, gbuffer=GBuffer(**{k: v for k, v in batch["gbuffer"].passes.items() if k != "mask"}))
    lm = task("joint", pass_loss_weights={"normal": 4.0}).make_batch(no_mask)[3]["loss_mask"]
    assert float(lm[:, :, 12:24].min()) == 4.0 and float(lm[:, :, :12].max()) == 1.0  # weights without a mask pass
    for bad in ({"sky": 2.0}, {"normal": 0.0}, {"normal": float("inf")}):
        with pytest.raises(NeuralRenderError, match="pass_loss_weights"):
            task("joint", pass_loss_weights=bad)


def test_window_rmse_loss_by_hand_and_pooled_when_no_block_is_marked():
    # 2 samples, 1 frame, 2 blocks of 1 channel, 1x2 pixels
    err = torch.tensor([[[[[1.0, 1.0]], [[4.0, 0.0]]]], [[[[9.0, 9.0]], [[16.0, 16.0]]]]])  # (2, 1, 2, 1, 2)
    weight = torch.ones_like(err)
    weight[0, :, 1, :, 1] = 0.0  # sample 0, block 1: one pixel unweighted
    pooled = (err * weight).sum() / weight.sum()
    assert torch.allclose(window_rmse_loss(err, weight, [False, False]), pooled)
    # block 1 marked: pooled block 0 (sum 20 over total weight 7) + share 3/7 x mean(sqrt(4 / 1), sqrt(32 / 2))
    got = window_rmse_loss(err, weight, [False, True])
    assert torch.allclose(got, torch.tensor(20 / 7 + 3 / 7 * (2.0 + 4.0) / 2))
    weight[0, :, 1] = 0.0  # a sample with no weight in the marked block adds 0 (no NaN)
    got = window_rmse_loss(err, weight, [False, True])
    assert torch.isfinite(got) and torch.allclose(got, torch.tensor(20 / 6 + 2 / 6 * (0.0 + 4.0) / 2))
    with pytest.raises(NeuralRenderError, match="blocks"):
        window_rmse_loss(err, weight, [True, False, False])


def test_window_rmse_passes_change_only_their_blocks_and_train():
    batch = demo_batch()
    plain, rmse = task("joint", kind="x0"), task("joint", kind="x0", window_rmse_passes=["roughness", "metallic"])
    rmse.load_state_dict(plain.state_dict())
    x0, cond, context, masks = plain.make_batch(batch)
    err, weight = plain.denoiser.loss_terms(plain.backbone, x0, cond, context, torch.Generator().manual_seed(0),
                                            **masks)
    marked = [p in ("roughness", "metallic") for p in plain.passes]
    expected = window_rmse_loss(err, weight, marked)
    got = rmse.compute_loss(x0, cond, context, torch.Generator().manual_seed(0), masks)
    assert torch.allclose(got, expected) and not torch.allclose(got, plain.compute_loss(
        x0, cond, context, torch.Generator().manual_seed(0), masks))
    got.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in rmse.backbone.parameters())
    with pytest.raises(NeuralRenderError, match="window_rmse_passes"):
        task("joint", window_rmse_passes=["sky"])
    with pytest.raises(NeuralRenderError, match="window_rmse_passes"):
        task("per_pass", window_rmse_passes=["roughness"])


def test_input_level_basecolor_target_is_the_albedo_rescaled_onto_the_input():
    batch = demo_batch()
    g = batch["gbuffer"]
    scale = torch.tensor([0.5, 0.8, 0.3]).view(1, 1, 3, 1, 1)
    lit = g.basecolor * scale * g.mask  # a clip lit by a uniform, tinted light: albedo x per-channel scale
    assert torch.allclose(input_level_albedo(g.basecolor, lit, g.mask), g.basecolor * scale, atol=1e-5)
    black = torch.zeros_like(g.basecolor)  # no albedo signal: scale 1, nothing changes
    assert torch.equal(input_level_albedo(black, lit, g.mask), black)
    system = task("joint", basecolor_target="input_level")
    x0 = system.make_batch(batch)[0]
    expect = CODEC.encode(pack_pass("basecolor", input_level_albedo(g.basecolor, batch["rgb"], g.mask)))
    assert torch.equal(x0[:, :, :12], expect)
    assert not torch.equal(x0[:, :, :12], task("joint").make_batch(batch)[0][:, :, :12])
    with pytest.raises(NeuralRenderError, match="basecolor_target"):
        task("joint", basecolor_target="relative")


def test_skip_passes_are_targets_relative_to_the_input_and_the_pipeline_adds_it_back(tmp_path):
    system = task("joint", kind="x0", skip_passes=["basecolor"], zero_init_output=True, ema_decay=0.9)
    batch = demo_batch()
    x0, cond, _, _ = system.make_batch(batch)
    g = batch["gbuffer"]
    assert torch.equal(x0[:, :, :12], CODEC.encode(pack_pass("basecolor", g.basecolor)) - cond)
    assert torch.equal(x0[:, :, 12:24], CODEC.encode(pack_pass("normal", g.normal)))  # other passes untouched
    pipe = system.pipeline()
    assert pipe.skip_passes == ["basecolor"]
    with system.ema_weights():  # zero-initialised output layer (EMA copy too): x0 = 0, basecolor = the input
        latents, _ = pipe.sample_latents(batch["rgb"], window=4, overlap=0)
    assert torch.equal(latents["basecolor"], cond) and not latents["normal"].any()
    pipe.save_pretrained(tmp_path / "m")
    assert InverseRenderingPipeline.from_pretrained(tmp_path / "m").skip_passes == ["basecolor"]
    with pytest.raises(NeuralRenderError, match="skip_passes"):
        task("joint", skip_passes=["roughness"])  # one channel: not comparable with the RGB latent


def test_skip_filter_sigma_makes_the_base_the_pixel_filtered_input_in_training_and_inference(tmp_path):
    from neural_render.render.pixel_filter import pixel_filter

    system = task("joint", kind="x0", skip_passes=["basecolor"], skip_filter_sigma=0.6, zero_init_output=True,
                  ema_decay=0.9)
    batch = demo_batch()
    x0, cond, _, _ = system.make_batch(batch)
    base = CODEC.encode(rgb_to_model(pixel_filter(batch["rgb"], 0.6)))
    assert not torch.equal(base, cond)
    assert torch.equal(cond, CODEC.encode(rgb_to_model(batch["rgb"])))  # the condition itself stays unfiltered
    assert torch.equal(x0[:, :, :12], CODEC.encode(pack_pass("basecolor", batch["gbuffer"].basecolor)) - base)
    pipe = system.pipeline()
    with system.ema_weights():  # zero output: basecolor = the filtered input exactly
        latents, _ = pipe.sample_latents(batch["rgb"], window=4, overlap=0)
    assert torch.allclose(latents["basecolor"], base, atol=1e-6)
    pipe.save_pretrained(tmp_path / "m")
    assert InverseRenderingPipeline.from_pretrained(tmp_path / "m").skip_filter_sigma == 0.6
    with pytest.raises(NeuralRenderError, match="skip_filter_sigma"):
        task("joint", skip_passes=["basecolor"], skip_filter_sigma=-1.0)


def test_pass_choice_is_random_in_training_and_fixed_in_evaluation():
    system, batch = task(), demo_batch()
    chosen = set()
    for _ in range(20):
        _, _, context, _ = system.make_batch(batch)
        chosen |= {int(torch.cdist(context[i], system.pass_embedding.tokens[:, 0]).argmin()) for i in range(2)}
    assert len(chosen) >= 4  # uniform over 5 passes: 40 draws hit at least 4
    system.eval()
    first = system.make_batch(batch)[2]
    assert all(torch.equal(first, system.make_batch(batch)[2]) for _ in range(3))


def _eval_loss(system, batch, passes) -> float:
    """Deterministic loss over every pass (fixed noise levels and noise)."""
    total = 0.0
    for p in passes:
        b = dict(batch, pass_id=torch.full((2,), p)) if system.mode == "per_pass" else batch
        x0, cond, context, masks = system.make_batch(b)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            total += float(system.denoiser.loss(system.backbone, x0, cond, context, generator=g,
                                                sigma=torch.full((2,), 0.5), **masks))
    return total


def test_training_learns_and_the_pass_embedding_selects_the_pass():
    system, batch = task(kind="x0", lr=3e-3, warmup_steps=0), demo_batch()
    passes = range(len(PREDICTED_PASSES))
    before = _eval_loss(system, batch, passes)
    optimizer = torch.optim.AdamW([p for _, p in system.trainable_named_parameters()], lr=3e-3)
    for step in range(120):
        b = dict(batch, pass_id=torch.tensor([step % 5, (step + 2) % 5]))
        loss = system.training_step(b, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _eval_loss(system, batch, passes)
    assert after < 0.5 * before
    # same video, five contexts: the output made with pass p's tokens matches pass p's target better than the
    # outputs made with any other pass's tokens (errors over the trained region: foreground, all pixels for depth)
    system.eval()
    g = batch["gbuffer"]
    cond = CODEC.encode(rgb_to_model(batch["rgb"]))
    scale = depth_scale_of(g.depth, g.mask)
    foreground = latent_mask(g.mask, 4, 8, 8).expand(-1, -1, 12, -1, -1) > 0
    with torch.no_grad():
        preds = {n: system.denoiser.predict_x0(system.backbone, torch.zeros_like(cond), torch.ones(2), cond,
                                               system.pass_embedding.embed([n, n])) for n in PREDICTED_PASSES}
    for name in PREDICTED_PASSES:
        target = CODEC.encode(pack_pass(name, g.passes[name], scale))
        region = torch.ones_like(foreground) if name == "depth" else foreground
        errors = {q: float((p - target)[region].pow(2).mean()) for q, p in preds.items()}
        assert min(errors, key=errors.get) == name, (name, errors)


def test_joint_mode_learns():
    system, batch = task("joint", lr=3e-3), demo_batch()
    before = _eval_loss(system, batch, [0])
    optimizer = torch.optim.AdamW([p for _, p in system.trainable_named_parameters()], lr=3e-3)
    for step in range(40):
        loss = system.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert _eval_loss(system, batch, [0]) < 0.7 * before


def test_pipeline_and_export_carry_mode_passes_and_training_steps(tmp_path):
    system = task("joint", processing_size=16, num_steps=3)
    pipe = system.pipeline()
    assert isinstance(pipe, InverseRenderingPipeline) and pipe.mode == "joint" and not pipe.is_trained
    system._loaded_step = 7  # as after loading a checkpoint of step 7
    system.export(tmp_path / "model")
    loaded = InverseRenderingPipeline.from_pretrained(tmp_path / "model")
    assert loaded.mode == "joint" and loaded.passes == list(PREDICTED_PASSES) and loaded.is_trained
    assert loaded.processing_size == 16 and loaded.default_steps() == 3


def test_misconfigured_tasks_and_batches_raise():
    with pytest.raises(NeuralRenderError, match="joint mode"):
        task("per_pass").__class__(task("per_pass").backbone, Denoiser("flow"), CODEC, None, mode="joint")
    with pytest.raises(NeuralRenderError, match="pass embedding"):
        InverseTask(task().backbone, Denoiser("flow"), CODEC, None, mode="per_pass")
    with pytest.raises(NeuralRenderError, match="mode"):
        task(mode="per_pass").__class__(task().backbone, Denoiser("flow"), CODEC, PassEmbedding(dim=32), mode="both")
    batch = demo_batch()
    batch["gbuffer"] = batch["gbuffer"].replace(roughness=None)
    with pytest.raises(NeuralRenderError, match="roughness"):
        task().make_batch(batch)
    with pytest.raises(NeuralRenderError, match="rgb"):
        task().make_batch({"gbuffer": batch["gbuffer"]})
