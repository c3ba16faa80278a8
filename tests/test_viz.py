"""Contact sheet layout and display conversions; shipped-asset lookup."""

import numpy as np
import pytest
import torch

from neural_render.data_assets import envmap_path, envmap_split
from neural_render.errors import NeuralRenderError
from neural_render.types import GBuffer
from neural_render.viz.contact_sheet import LABEL_HEIGHT, gbuffer_contact_sheet, pass_to_display


def test_contact_sheet_layout_and_content():
    t, h, w = 4, 10, 12
    n = torch.zeros(1, t, 3, h, w)
    n[:, :, 2] = 1.0  # facing the camera
    g = GBuffer(basecolor=torch.full((1, t, 3, h, w), 0.5), normal=n, depth=torch.full((1, t, 1, h, w), 2.0),
                roughness=torch.zeros(1, t, 1, h, w), metallic=torch.ones(1, t, 1, h, w))
    rgb = torch.zeros(1, t, 3, h, w)
    rgb[:, 2] = 1.0  # frame 2 is white
    sheet = gbuffer_contact_sheet(g, rgb, max_rows=4)
    gap = 2
    assert sheet.shape == (LABEL_HEIGHT + 4 * h + 3 * gap, 6 * w + 5 * gap, 3) and sheet.dtype == np.uint8
    row = lambda r: LABEL_HEIGHT + r * (h + gap)  # noqa: E731
    col = lambda c: c * (w + gap)  # noqa: E731
    assert (sheet[row(2):row(2) + h, col(0):col(0) + w] == 255).all()  # rgb of frame 2
    assert (sheet[row(1):row(1) + h, col(0):col(0) + w] == 0).all()
    assert (sheet[row(0):row(0) + h, col(2):col(2) + w] == [128, 128, 255]).all()  # +Z normal -> blue
    assert (sheet[row(0):row(0) + h, col(5):col(5) + w] == 255).all()  # metallic 1
    assert sheet[:LABEL_HEIGHT].std() > 0  # labels drawn


def test_display_conversions():
    d = torch.tensor([0.0, 1.0, 4.0]).reshape(3, 1, 1, 1)
    shown = pass_to_display("depth", d)
    assert shown.shape == (3, 1, 1, 3)
    assert shown[0].max() == 0 and shown[1, 0, 0, 0] > shown[2, 0, 0, 0]  # background black, near brighter
    srgb = pass_to_display("basecolor", torch.full((1, 3, 1, 1), 0.214))
    assert abs(int(srgb[0, 0, 0, 0]) - 128) <= 1  # linear 0.214 is sRGB ~0.5


def test_shipped_envmaps_and_split():
    split = envmap_split()
    assert len(split["train"]) == 8 and len(split["test"]) == 4 and not set(split["train"]) & set(split["test"])
    for name in split["train"] + split["test"]:
        assert envmap_path(name).exists()
    with pytest.raises(NeuralRenderError, match="no shipped env map"):
        envmap_path("no_such_sky")
    with pytest.raises(NeuralRenderError, match="does not exist"):
        envmap_path("/nonexistent/sky.hdr")
