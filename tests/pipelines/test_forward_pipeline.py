"""Forward pipeline: export / load round trip, partial G-buffers, windows, odd sizes, Realiz3D domains at inference,
bad inputs; relight / edit pipeline with a tiny inverse model."""

import pytest
import torch

from neural_render.data.forward_data import forward_cond_channels
from neural_render.data_assets import envmap_path
from neural_render.demo.scene import demo_scene
from neural_render.errors import NeuralRenderError
from neural_render.io import load_envmap
from neural_render.models.codec import PixelUnshuffleCodec
from neural_render.models.denoiser import Denoiser
from neural_render.pipelines.forward import ForwardPipeline
from neural_render.pipelines.relight import RelightPipeline, apply_material_edit, check_mask, static_camera
from neural_render.tasks.base import make_backbone
from neural_render.tasks.forward import ForwardTask
from neural_render.types import Camera, EnvMap, GBuffer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def forward_task(shifters=False):
    c = 12
    backbone = make_backbone("svd", config={"in_channels": c, "out_channels": c}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(c, True))
    with torch.no_grad():  # an "trained-looking" output layer so the network's output matters
        backbone.unet.conv_out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return ForwardTask(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), ema_decay=None, window=2, overlap=1,
                       domain_shifter={"rank": 2, "embed_dim": 4} if shifters else None)


@pytest.fixture(scope="module")
def scene():
    return demo_scene(4, 16, 16)


@pytest.fixture(scope="module")
def env():
    return load_envmap(envmap_path("venice_sunset")).rotated(30.0, 5.0, 0.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = forward_task(shifters=True)
    folder = tmp_path_factory.mktemp("models") / "forward"
    model.export(folder)
    return model, folder


def test_export_round_trip_renders_identically(exported, scene, env):
    model, folder = exported
    live = model.pipeline().render(scene.gbuffer, scene.camera, env)
    loaded = ForwardPipeline.from_pretrained(folder)
    assert loaded.forward_config["window"] == 2 and loaded.domain_shifters is not None
    again = loaded.render(scene.gbuffer, scene.camera, env)
    assert torch.equal(live.rgb, again.rgb) and live.rgb.shape == (1, 4, 3, 16, 16)
    assert float(live.rgb.min()) >= 0 and float(live.rgb.max()) <= 1
    from neural_render.pipelines.base import load_pipeline
    generic = load_pipeline(folder)  # the generic loader reads forward_config.json and the shifters too (issue #25)
    assert isinstance(generic, ForwardPipeline) and generic.domain_shifters is not None
    assert torch.equal(generic.render(scene.gbuffer, scene.camera, env).rgb, again.rgb)


def test_partial_gbuffers_windows_and_odd_sizes(exported, scene, env):
    model, _ = exported
    pipe = model.pipeline()
    full = pipe.render(scene.gbuffer, scene.camera, env, window=8).rgb
    for passes in ({"normal": scene.gbuffer.normal}, {"basecolor": scene.gbuffer.basecolor}):
        out = pipe.render(GBuffer(**passes), scene.camera, env, window=8)
        assert out.rgb.shape == full.shape and torch.isfinite(out.rgb).all()
        assert (out.rgb - full).abs().max() > 1e-3
    assert pipe.render(GBuffer(basecolor=scene.gbuffer.basecolor), scene.camera, env).prior is None
    windowed = pipe.render(scene.gbuffer, scene.camera, env, window=2, overlap=1).rgb
    first = pipe.render(scene.gbuffer.frames(0, 2), scene.camera.slice_frames(0, 2), env, window=2).rgb
    assert torch.allclose(windowed[:, 0], first[:, 0], atol=1e-6)  # frame 0 lies in one window only
    odd = demo_scene(2, 18, 14)
    out = pipe.render(odd.gbuffer, odd.camera, env)
    assert out.rgb.shape == (1, 2, 3, 14, 18)


def test_domains_at_inference(exported, scene, env):
    model, _ = exported
    pipe = model.pipeline()
    real = pipe.render(scene.gbuffer, scene.camera, env, domain="real").rgb
    synthetic = pipe.render(scene.gbuffer, scene.camera, env, domain="synthetic", reassign_blocks=2,
                            reassign_steps=1).rgb
    assert torch.equal(real, synthetic)  # fresh (zero-init) shifters: the domain changes nothing
    with torch.no_grad():
        for p in pipe.domain_shifters.left:
            p.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    real = pipe.render(scene.gbuffer, scene.camera, env, domain="real").rgb
    synthetic = pipe.render(scene.gbuffer, scene.camera, env, domain="synthetic").rgb
    reassigned = pipe.render(scene.gbuffer, scene.camera, env, domain="real", reassign_blocks=2, reassign_steps=1).rgb
    assert (real - synthetic).abs().max() > 1e-3 and (real - reassigned).abs().max() > 1e-4
    assert pipe.domain_shifters.state()[0] is None  # state cleared after rendering
    with pytest.raises(NeuralRenderError, match="domain"):
        pipe.render(scene.gbuffer, scene.camera, env, domain="cartoon")


def test_bad_inputs(exported, scene, env):
    model, _ = exported
    pipe = model.pipeline()
    with pytest.raises(NeuralRenderError, match="camera"):
        pipe.render(scene.gbuffer, demo_scene(4, 16, 12).camera, env)
    with pytest.raises(NeuralRenderError, match="NaN"):
        EnvMap(torch.full((3, 8, 16), float("nan")))
    with pytest.raises(NeuralRenderError, match="EnvMap"):
        pipe.render(scene.gbuffer, scene.camera, torch.ones(3, 8, 16))
    with pytest.raises(NeuralRenderError, match="at least one"):
        pipe.render(GBuffer(mask=scene.gbuffer.mask), scene.camera, env)
    with pytest.raises(NeuralRenderError, match="pipeline folder"):
        ForwardPipeline.from_pretrained(envmap_path("venice_sunset").parent)


def tiny_inverse():
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    c = 12
    backbone = make_backbone("svd", config={"in_channels": 5 * c, "out_channels": 5 * c}, tiny=True, seed=0,
                             cond_channels=c)
    return InverseRenderingPipeline(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), mode="joint")


def test_relight_and_edit(exported, scene, env):
    model, _ = exported
    pipe = RelightPipeline(tiny_inverse(), model.pipeline())
    video = torch.rand(1, 4, 3, 16, 16)
    other = load_envmap(envmap_path("kiara_1_dawn"))
    out = pipe.relight(video, [env, other])
    assert len(out.videos) == 2 and out.videos[0].shape == video.shape
    assert (out.videos[0] - out.videos[1]).abs().max() > 1e-3
    mask = torch.zeros(1, 1, 1, 16, 16)
    mask[..., 4:10, 4:10] = 1.0
    edit = pipe.edit(video, mask, {"roughness": 0.1, "metallic": 1.0, "basecolor": (0.6, 0.1, 0.05)}, env)
    inside = mask.expand(1, 4, 1, 16, 16).bool()
    outside = ~inside.expand_as(video)
    assert torch.equal(edit.video.masked_select(outside), video.masked_select(outside))
    assert (edit.edited.roughness.masked_select(inside) - 0.1).abs().max() < 1e-6
    with pytest.raises(NeuralRenderError, match="video is 16x16"):
        check_mask(torch.zeros(1, 1, 1, 8, 8), video)
    with pytest.raises(NeuralRenderError, match="cannot edit"):
        apply_material_edit(edit.gbuffer, inside.float(), {"normal": 1.0})
    with pytest.raises(NeuralRenderError, match="in \\[0, 1\\]"):
        apply_material_edit(edit.gbuffer, inside.float(), {"roughness": 2.0})
    assert isinstance(static_camera(video), Camera)
