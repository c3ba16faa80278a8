"""Tests for neural_render.render.analytic: exact ray-cast sphere G-buffers."""

import math

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.render.analytic import sphere_gbuffer
from neural_render.types import Camera, look_at


def _camera(width=40, height=30, eyes=((0.4, 0.6, 3.0),), fov=50.0) -> Camera:
    c2w = torch.stack([look_at(e, (0.1, -0.05, 0.0)) for e in eyes])[None]
    return Camera.from_fov(fov, width, height, c2w)


def test_planar_depth_puts_hits_on_the_sphere_with_exact_normals():
    cam = _camera(eyes=((0.4, 0.6, 3.0), (-1.5, 0.3, 2.5)))
    centre, radius = torch.tensor([0.1, -0.05, 0.0]), 0.8
    g = sphere_gbuffer(cam, centre, radius, (0.2, 0.4, 0.6), 0.3, 0.7).validate("sphere")
    rays = cam.ray_directions()[0, 0]  # (3, H, W) camera space
    for t in range(2):
        mask = g.mask[0, t, 0] > 0
        assert int(mask.sum()) > 100
        # camera-space hit point from planar depth (-z_cam): p = ray * depth / -ray_z; must lie on the sphere
        p_cam = rays * (g.depth[0, t] / -rays[2:3])
        rot, eye = cam.camera_to_world[0, t, :3, :3], cam.camera_to_world[0, t, :3, 3]
        p_world = torch.einsum("ij,jhw->ihw", rot, p_cam) + eye[:, None, None]
        dist = (p_world - centre[:, None, None]).norm(dim=0)
        assert torch.allclose(dist[mask], torch.full_like(dist[mask], radius), atol=1e-5)
        # exact normals: unit, equal to (p - c) / r rotated into camera space, facing the camera
        n_world = torch.einsum("ij,jhw->ihw", rot, g.normal[0, t])
        assert torch.allclose(n_world[:, mask], ((p_world - centre[:, None, None]) / radius)[:, mask], atol=1e-5)
        assert bool(((g.normal[0, t] * rays).sum(0)[mask] < 0).all())
        # outside the mask everything is 0, inside the material is constant
        assert bool((g.depth[0, t, 0][~mask] == 0).all()) and bool((g.normal[0, t][:, ~mask] == 0).all())
        assert torch.allclose(g.basecolor[0, t][:, mask].T, torch.tensor([0.2, 0.4, 0.6]).expand(int(mask.sum()), 3))
        assert torch.allclose(g.metallic[0, t][0][mask], torch.tensor(0.7))


def test_mask_matches_the_silhouette_exactly():
    """A pixel is covered iff its centre ray passes within the radius of the centre."""
    cam = _camera(64, 48)
    centre, radius = torch.tensor([0.1, -0.05, 0.0]), 0.8
    g = sphere_gbuffer(cam, centre, radius)
    c2w = cam.camera_to_world[0, 0].double()
    d = torch.einsum("ij,jhw->ihw", c2w[:3, :3], cam.ray_directions()[0, 0].double())
    oc = centre.double()[:, None, None] - c2w[:3, 3, None, None]
    closest = (oc - (oc * d).sum(0) * d).norm(dim=0)  # distance from the centre to each ray
    inside = closest < radius
    assert torch.equal(g.mask[0, 0, 0] > 0, inside)
    # roughly the projected disc area: the sphere subtends asin(r / dist)
    dist = float(oc[:, 0, 0].norm())
    fx = float(cam.intrinsics[0, 0])
    disc = math.pi * (fx * math.tan(math.asin(radius / dist))) ** 2
    assert float(g.mask.sum()) == pytest.approx(disc, rel=0.05)


def test_per_frame_centres_camera_inside_and_bad_input():
    cam = _camera(eyes=((0.0, 0.0, 3.0), (0.0, 0.0, 3.0)))
    moving = sphere_gbuffer(cam, torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]]), 0.5)
    cols = torch.arange(40.0)
    centroid = [float((moving.mask[0, t, 0] * cols).sum() / moving.mask[0, t, 0].sum()) for t in range(2)]
    assert centroid[1] > centroid[0] + 3  # the sphere moved right (+X) in the image
    inside = sphere_gbuffer(cam, (0.0, 0.0, 3.0), 1.0)  # camera inside the sphere: back faces are not rendered
    assert float(inside.mask.sum()) == 0
    for kwargs in ({"radius": 0.0}, {"basecolor": (1.2, 0.0, 0.0)}, {"roughness": -0.1}, {"basecolor": (0.1, 0.2)}):
        args = {"center": (0, 0, 0), "radius": 1.0, **kwargs}
        with pytest.raises(NeuralRenderError):
            sphere_gbuffer(cam, **args)
    with pytest.raises(NeuralRenderError):
        sphere_gbuffer(cam, (0.0, 0.0), 1.0)
