"""Fixtures shared by the tests: one torch thread, Mitsuba variants, tiny synthetic data, untrained pipelines."""

import pytest


@pytest.fixture
def one_thread():
    """torch on one thread during the test (tiny ops run faster and a core stays free); the count is restored after.
    A module uses it for every test with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mi():
    """The mitsuba module with the variant neural_render selects here (llvm_ad_rgb where usable, else scalar_rgb)."""
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    return select_mitsuba_variant()


@pytest.fixture
def use_variant(monkeypatch):
    """``use_variant(name)`` -> the mitsuba module with Mitsuba variant ``name`` selected for this test
    ($NEURAL_RENDER_MITSUBA_VARIANT, undone after it); skips the test where that variant is unusable."""
    from neural_render.errors import NeuralRenderError
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    def use(name: str):
        monkeypatch.setenv("NEURAL_RENDER_MITSUBA_VARIANT", name)
        try:
            return select_mitsuba_variant()
        except NeuralRenderError as err:
            pytest.skip(f"{name} unusable: {err}")

    return use


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic training set (``neural-render synth``: 2 clips x 4 frames, 16x16, 2 spp, train env maps)."""
    from neural_render.cli import main

    data = tmp_path_factory.mktemp("synth") / "train"
    assert main(["synth", "--out", str(data), "--clips", "2", "--frames", "4", "--size", "16x16", "--spp", "2",
                 "--envmaps", "train", "--seed", "3", "--max-objects", "2", "--no-progress"]) == 0
    return data


@pytest.fixture(scope="session")
def untrained_pipelines(tmp_path_factory):
    """Folder with UNTRAINED tiny pipelines, ``forward_model`` (SVD, x0, prior + residual, zero-initialised output)
    and ``inverse_model`` (SVD, joint, x0), pixel-unshuffle codec x2: plumbing only, never quality."""
    from neural_render.data.forward_data import forward_cond_channels
    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.pipelines.inverse import InverseRenderingPipeline
    from neural_render.tasks.base import make_backbone
    from neural_render.tasks.forward import ForwardTask

    root = tmp_path_factory.mktemp("untrained_pipelines")
    c = 12
    backbone = make_backbone("svd", config={"in_channels": c, "out_channels": c}, tiny=True, seed=0,
                             cond_channels=forward_cond_channels(c, True))
    ForwardTask(backbone, Denoiser("x0"), PixelUnshuffleCodec(2), ema_decay=None, window=2, overlap=1,
                zero_init_output=True).export(root / "forward_model")
    inverse = make_backbone("svd", config={"in_channels": 5 * c, "out_channels": 5 * c}, tiny=True, seed=0,
                            cond_channels=c)
    InverseRenderingPipeline(inverse, Denoiser("x0"), PixelUnshuffleCodec(2), mode="joint").save_pretrained(
        root / "inverse_model")
    return root


@pytest.fixture(scope="session")
def write_demo_clips():
    """``write_demo_clips(root, count)`` -> root: ``count`` clip folders of the analytic demo scene (exact G-buffers,
    6+i frames of 16x16, rgb = lit basecolor + a grey background), for training smoke tests."""
    def write(root, count: int):
        from neural_render.demo.scene import demo_scene
        from neural_render.io import Clip, ClipMeta, write_clip

        for i in range(count):
            scene = demo_scene(6 + i, 16, 16)
            g = scene.gbuffer
            rgb = g.basecolor * (0.2 + 0.8 * g.normal[:, :, 2:3].clamp(0, 1)) + 0.25 * (1 - g.mask)
            write_clip(root / f"clip_{i}", Clip(rgb, g, scene.camera, ClipMeta.for_camera(scene.camera, fps=12.0)),
                       preview_mp4=False)
        return root

    return write
