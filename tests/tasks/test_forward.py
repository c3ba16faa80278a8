"""Forward task: condition layout and presence masks, env encodings follow poses and rotations (360 deg yaw = same),
zero-init residual model == its split-sum prior, fitting lowers the loss, Realiz3D stages train the right weights."""

import lightning.pytorch as pl
import pytest
import torch

from neural_render.data.forward_data import ForwardClipDataset, ForwardDataModule, collate_forward
from neural_render.data_assets import envmap_path
from neural_render.demo.scene import demo_scene
from neural_render.errors import NeuralRenderError
from neural_render.io import Clip, ClipMeta, load_envmap, write_clip
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.conditioning import FORWARD_PASSES, display_pack, forward_cond_channels, forward_condition
from neural_render.models.denoiser import Denoiser
from neural_render.render.envmap import env_encodings
from neural_render.render.rotation import euler_to_matrix
from neural_render.render.shade import prepare_ibl, shade
from neural_render.tasks.base import make_backbone
from neural_render.tasks.forward import ForwardTask
from neural_render.types import look_at

ENV = "kiara_1_dawn"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two 4-frame 16x16 clips of the analytic demo scene (exact G-buffers) under a shipped env map turned 0 / 90 deg;
    'ground truth' rgb = the split-sum render darkened where the ground is (a stand-in for shadows)."""
    root = tmp_path_factory.mktemp("forward_clips")
    env = load_envmap(envmap_path(ENV))
    scene = demo_scene(4, 16, 16)
    for i, yaw in enumerate((0.0, 90.0)):
        rgb = shade(scene.gbuffer, scene.camera, prepare_ibl(env.rotated(yaw)))
        rgb = rgb * (1.0 - 0.5 * (scene.object_ids == 1).float())
        meta = ClipMeta.for_camera(scene.camera, envmap={"path": str(envmap_path(ENV).resolve()),
                                                         "rotation_deg": [yaw, 0.0, 0.0]})
        write_clip(root / f"clip_{i}", Clip(rgb, scene.gbuffer, scene.camera, meta), preview_mp4=False)
    return root


def task(with_prior=True, residual=True, **kw):
    c = 12
    backbone = make_backbone("svd", config={"in_channels": c, "out_channels": c}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(c, with_prior))
    kw.setdefault("ema_decay", None)
    return ForwardTask(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), with_prior=with_prior, residual=residual,
                       window=4, overlap=2, **kw)


def test_condition_layout_and_presence_masks(clips):
    ds = ForwardClipDataset(clips, num_frames=4, gbuffer_dropout=1.0, seed=3, samples_per_clip=4)
    items = [ds[i] for i in range(len(ds))]
    assert any(it["present"].sum() < 5 for it in items) and all(it["present"].sum() >= 1 for it in items)
    batch = collate_forward(items)
    codec = PixelUnshuffleCodec(2)
    cond, prior = forward_condition(codec.encode, batch, with_prior=True)
    c = codec.latent_channels
    assert cond.shape == (len(items), 4, forward_cond_channels(c, True), 8, 8)
    for i, name in enumerate(FORWARD_PASSES):
        block = cond[:, :, i * c:(i + 1) * c]
        flags = batch["present"][:, i]
        mask_channel = cond[:, :, 5 * c + i]
        assert torch.equal(mask_channel, flags.view(-1, 1, 1, 1).expand_as(mask_channel))
        assert torch.all(block[flags == 0] == 0) and torch.all(block[flags == 1].abs().sum((1, 2, 3, 4)) > 0)
    no_normal = batch["present"][:, FORWARD_PASSES.index("normal")] == 0
    assert torch.all(batch["prior_present"][no_normal] == 0) and torch.all(prior[no_normal] == 0)
    assert torch.all(batch["prior_present"][~no_normal] == 1)


def test_env_encodings_follow_rotation_and_camera_motion():
    """Rotating the env by 360 deg of yaw gives the original encodings (1e-5), with pitch AND roll in the env rotation
    and a moving, rolled camera; turning the sky by R equals turning every camera by R^T."""
    env = load_envmap(envmap_path(ENV)).rotated(40.0, 25.0, -15.0)
    eyes = torch.tensor([[3.0, 1.0, 0.5], [2.0, 1.5, 2.0], [0.0, 0.8, 3.0]])
    c2w = look_at(eyes, torch.zeros(3), up=(0.2, 1.0, 0.1))[None]  # (1, 3, 4, 4), tilted up vector = roll
    base = env_encodings(env, c2w, 16, 32)
    turned = env_encodings(env.rotated(360.0, 0.0, 0.0), c2w, 16, 32)
    for key in ("ldr", "log", "dir"):
        assert (base[key] - turned[key]).abs().max() < 1e-5
    assert (base["ldr"][0, 0] - base["ldr"][0, 1]).abs().max() > 0.05  # the camera moves: encodings change per frame
    r = euler_to_matrix(70.0, 10.0, 5.0)
    sky = env_encodings(env.rotated(matrix=r), c2w, 16, 32)
    cams = c2w.clone()
    cams[..., :3, :3] = r.t() @ c2w[..., :3, :3]
    assert (sky["ldr"] - env_encodings(env, cams, 16, 32)["ldr"]).abs().max() < 1e-4


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_zero_init_residual_model_renders_its_prior(clips, sigma):
    model = task(zero_init_output=True, prior_filter_sigma=sigma)
    ds = ForwardClipDataset(clips, num_frames=4, random=False)
    item = ds[0]
    pipe = model.pipeline()
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.types import Camera
    clip = read_clip(ds.clips[0])
    out = pipe.render(clip.gbuffer, clip.camera, read_clip_envmap(ds.clips[0]))
    assert isinstance(clip.camera, Camera) and out.prior is not None
    assert (out.rgb - out.prior.clamp(0, 1)).abs().max() < 1e-5
    assert model.pipeline().forward_config["prior_filter_sigma"] == sigma
    from neural_render.render.pixel_filter import pixel_filter
    fed = pixel_filter(item["prior"], sigma) if sigma else item["prior"]
    assert torch.allclose(out.prior, fed, atol=1e-5)
    if sigma:  # the filter changed what the model saw (edges of the split-sum render are blurred)
        assert (fed - item["prior"]).abs().max() > 1e-3


def test_fit_lowers_the_loss(clips):
    model = task(lr=2e-3, warmup_steps=0)
    dm = ForwardDataModule(str(clips), num_frames=4, batch_size=2, gbuffer_dropout=0.0, seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    def batch_loss():
        with torch.no_grad():
            x0, cond, context, masks = model.make_batch(batch)
            return float(model.denoiser.loss(model.backbone, x0, cond, context, **masks))

    before = batch_loss()
    pl.Trainer(accelerator="cpu", max_steps=25, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model, datamodule=dm)
    assert batch_loss() < 0.5 * before


def test_realiz3d_stages_train_the_right_weights(clips, tmp_path):
    dm = ForwardDataModule(str(clips), real_roots=str(clips), num_frames=4, batch_size=4, gbuffer_dropout=0.0)

    def fit(model, steps=3):
        pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0).fit(model, datamodule=dm)

    stage1 = task(stage="shifters", domain_shifter={"rank": 2, "embed_dim": 4}, lr=1e-2)
    assert all(n.startswith("domain_shifters.") for n in stage1.trainable_names)
    backbone0 = {k: v.clone() for k, v in stage1.backbone.state_dict().items()}
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    stage1.train()
    _, cond, _, _ = stage1.make_batch(batch)
    assert torch.all(cond == 0)  # stage 1: control dropped for every sample
    fit(stage1)
    assert all(torch.equal(v, stage1.backbone.state_dict()[k]) for k, v in backbone0.items())
    assert any(float(p.abs().sum()) > 0 for p in stage1.domain_shifters.left)
    stage1.domain_shifters.save_pretrained(tmp_path / "shifters")

    stage2 = task(stage="backbone", domain_shifter={"pretrained": str(tmp_path / "shifters")}, lr=1e-2,
                  real_cond_dropout=1.0, reassign_prob=1.0, reassign_blocks=2, frozen_blocks=2)
    shifters0 = {k: v.clone() for k, v in stage2.domain_shifters.state_dict().items()}
    stage2.train()
    x0, cond, _, _ = stage2.make_batch(batch)
    real = batch["domain"] == 1
    assert torch.all(cond[real] == 0) and torch.any(cond[~real] != 0)
    ids, rows, frozen = stage2.domain_shifters.state()
    assert torch.equal(rows, real) and frozen == 2
    assert torch.all(ids[real, :2] == 0) and torch.all(ids[real, 2:] == 1) and torch.all(ids[~real] == 0)
    fit(stage2)
    assert all(torch.equal(v, stage2.domain_shifters.state_dict()[k]) for k, v in shifters0.items())
    export = tmp_path / "stage2_pipe"
    stage2.export(export)
    assert (export / "domain_shifters" / "config.json").is_file()


def test_bad_settings_are_rejected():
    with pytest.raises(NeuralRenderError, match="residual"):
        task(with_prior=False, residual=True)
    with pytest.raises(NeuralRenderError, match="cond_channels"):
        ForwardTask(make_backbone("svd", config={"in_channels": 12, "out_channels": 12}, tiny=True, cond_channels=12),
                    Denoiser("x0"), PixelUnshuffleCodec(2))
    with pytest.raises(NeuralRenderError, match="pretrained"):
        task(stage="backbone", domain_shifter={"rank": 2})
    with pytest.raises(NeuralRenderError, match="stage"):
        task(stage="everything")
    for bad in (-0.5, 10.0):
        with pytest.raises(NeuralRenderError, match="prior_filter_sigma"):
            task(prior_filter_sigma=bad)
    assert display_pack(torch.tensor([2.0])).item() == pytest.approx(1.0, abs=1e-6)


def test_crop_and_resize_keep_camera_consistent(clips):
    full = ForwardClipDataset(clips, num_frames=2, random=False)[0]
    small = ForwardClipDataset(clips, num_frames=2, random=False, size=(8, 8))[0]
    assert small["rgb"].shape == (1, 2, 3, 8, 8) and small["env"]["ldr"].shape == (1, 2, 3, 8, 8)
    norms = small["gbuffer"].normal.norm(dim=2)[small["gbuffer"].depth[:, :, 0] > 0]
    assert norms.numel() > 0 and (norms - 1).abs().max() < 1e-3  # nearest resize keeps unit normals
    # the prior of the resized item is the split-sum render of the resized G-buffers: close to the full one, pooled
    pooled = torch.nn.functional.avg_pool2d(full["prior"][0], 2)
    assert (small["prior"][0] - pooled).abs().mean() < 0.1
    cropped = ForwardClipDataset(clips, num_frames=2, random=False, crop=(8, 8))[0]
    assert torch.equal(cropped["prior"], full["prior"][..., 4:12, 4:12])
