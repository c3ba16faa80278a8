"""Fixtures shared by the command-line, demo and web tests."""

import pytest


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
