"""Rasterizer G-buffers against independent references: analytic spheres and boxes, analytic texture lookups,
Mitsuba's own sensor rays; the scalar_rgb fallback against llvm_ad_rgb; backend selection."""

import math

import numpy as np
import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.raster import Material, Mesh, rasterize, resolve_backend
from neural_render.render.analytic import sphere_gbuffer
from neural_render.render.rotation import euler_to_matrix
from neural_render.synth import shapes
from neural_render.types import Camera, look_at


def mesh_of(geometry, material, to_world=None, visible=None, name="m"):
    return Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                torch.eye(4) if to_world is None else to_world, visible, name)


def camera(size=48, frames=1, eye=(0.4, 0.9, 3.0), target=(0.0, 0.1, 0.0), fov=40.0):
    c2w = look_at(torch.tensor([eye] * frames), torch.tensor([target] * frames))
    return Camera.from_fov(fov, size, size, c2w[None])


def angle_deg(a, b, dim=2):
    """Angle between vectors along ``dim`` in degrees (atan2 form: accurate near 0, unlike acos)."""
    a, b = a.double(), b.double()
    return torch.rad2deg(torch.atan2(torch.linalg.cross(a, b, dim=dim).norm(dim=dim), (a * b).sum(dim)))


@pytest.mark.parametrize("variant,size", [("llvm_ad_rgb", 48), ("scalar_rgb", 32)])
def test_sphere_depth_and_normals_match_analytic_sphere(use_variant, variant, size):
    use_variant(variant)
    centre, radius = (0.2, 0.3, -0.1), 0.7
    m = torch.eye(4)
    m[:3, 3] = torch.tensor(centre)
    sphere = mesh_of(shapes.uv_sphere(radius, nu=384, nv=192), Material(0.5, 0.5, 0.0), m)
    cam = camera(size)
    gb = rasterize([sphere], cam, backend="mitsuba")
    ref = sphere_gbuffer(cam, centre, radius)
    both = (gb.mask > 0.5) & (ref.mask > 0.5)
    assert int(both.sum()) > 0.2 * size * size
    assert int(((gb.mask > 0.5) ^ (ref.mask > 0.5)).sum()) <= 0.05 * int(both.sum())  # silhouette pixels only
    rel = ((gb.depth - ref.depth).abs() / ref.depth.clamp_min(1e-6))[both]
    assert float(rel.max()) < 1e-3
    angles = angle_deg(gb.normal, ref.normal)[both[:, :, 0]]
    assert float(angles.max()) < 1.0
    assert float((gb.normal.norm(dim=2) - 1).abs()[both[:, :, 0]].max()) < 1e-5


def _ray_box(cam: Camera, to_world: torch.Tensor, half: torch.Tensor):
    """Analytic slab intersection in float64 -> (hit (H, W), planar depth (H, W), camera normal (3, H, W))."""
    rays = cam.ray_directions()[0, 0].to(torch.float64)  # (3, H, W)
    c2w = cam.camera_to_world[0, 0].to(torch.float64)
    w2o = torch.linalg.inv(to_world.to(torch.float64))
    d_world = torch.einsum("ij,jhw->ihw", c2w[:3, :3], rays)
    o = w2o[:3, :3] @ c2w[:3, 3] + w2o[:3, 3]
    d = torch.einsum("ij,jhw->ihw", w2o[:3, :3], d_world)
    t1, t2 = (-half[:, None, None] - o[:, None, None]) / d, (half[:, None, None] - o[:, None, None]) / d
    t_near = torch.minimum(t1, t2).amax(0)
    t_far = torch.maximum(t1, t2).amin(0)
    hit = (t_near <= t_far) & (t_near > 0)
    axis = torch.minimum(t1, t2).argmax(0)
    local_n = torch.zeros_like(d)
    sign = -torch.sign(torch.gather(d, 0, axis[None]))[0]
    local_n.scatter_(0, axis[None], sign[None])
    n_world = torch.einsum("ij,jhw->ihw", to_world[:3, :3].to(torch.float64), local_n)
    n_cam = torch.einsum("ji,jhw->ihw", c2w[:3, :3], n_world)
    depth = t_near * -rays[2]
    return hit, depth, n_cam


def test_box_depth_and_normals_exact_against_analytic_planes():
    size = torch.tensor([0.8, 0.6, 1.0], dtype=torch.float64)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = euler_to_matrix(30.0, 10.0, -5.0, dtype=torch.float64)
    m[:3, 3] = torch.tensor([0.1, 0.2, 0.0])
    box = mesh_of(shapes.box(tuple(size.tolist())), Material(0.5, 0.5, 0.0), m.float())
    cam = camera(48)
    gb = rasterize([box], cam, backend="mitsuba")
    hit, depth, normal = _ray_box(cam, m, size / 2)
    ours = gb.mask[0, 0, 0] > 0.5
    both = ours & hit
    assert int((ours ^ hit).sum()) <= 3  # rays grazing an edge may round either way
    rel = ((gb.depth[0, 0, 0].double() - depth).abs() / depth)[both]
    assert float(rel.max()) < 1e-5
    assert float(angle_deg(gb.normal[0, 0], normal, dim=0)[both].max()) < 1e-3


def test_material_maps_are_exactly_the_assigned_texels():
    rng = np.random.default_rng(0)
    colours = torch.from_numpy(rng.uniform(0, 1, (3, 4, 4)).astype(np.float32))
    rough = torch.from_numpy(rng.uniform(0, 1, (1, 4, 4)).astype(np.float32))
    quad = shapes.ground_quad(1.0, uv_tiles=2.0)  # y = 0, x, z in [-1, 1], uv = (x + 1, z + 1)
    material = Material(colours, rough, 0.375)
    cam = camera(48, eye=(0.0, 2.5, 0.4), target=(0.0, 0.0, 0.0), fov=60)
    gb = rasterize([mesh_of(quad, material)], cam, backend="mitsuba")
    # independent reference: analytic ray-plane hit -> uv -> texel (nearest, repeat)
    rays = cam.ray_directions()[0, 0].to(torch.float64)
    c2w = cam.camera_to_world[0, 0].to(torch.float64)
    d = torch.einsum("ij,jhw->ihw", c2w[:3, :3], rays)
    t = -c2w[1, 3] / d[1]
    x, z = c2w[0, 3] + t * d[0], c2w[2, 3] + t * d[2]
    inside = (x.abs() < 1) & (z.abs() < 1)
    u, v = (x + 1) * 4, (z + 1) * 4  # texel coordinates (uv * 4 texels)
    safe = inside & ((u - u.round()).abs() > 1e-3) & ((v - v.round()).abs() > 1e-3)
    col, row = torch.floor(u).long() % 4, torch.floor(v).long() % 4
    mask = gb.mask[0, 0, 0] > 0.5
    assert torch.equal(mask[safe], torch.ones_like(mask[safe]))
    expected = colours[:, row[safe], col[safe]]
    assert torch.equal(gb.basecolor[0, 0][:, safe], expected)  # bitwise: the assigned float32 texels
    assert torch.equal(gb.roughness[0, 0, 0][safe], rough[0, row[safe], col[safe]])
    assert torch.equal(gb.metallic[0, 0, 0][mask], torch.full_like(gb.metallic[0, 0, 0][mask], 0.375))
    texels = {tuple(c) for c in colours.reshape(3, -1).T.tolist()}
    assert {tuple(c) for c in gb.basecolor[0, 0][:, mask].T.tolist()} <= texels


def test_background_ids_motion_and_visibility():
    frames = 3
    moves = torch.eye(4).repeat(frames, 1, 1)
    moves[:, 0, 3] = torch.tensor([-0.4, 0.0, 0.4])
    sphere = mesh_of(shapes.uv_sphere(0.35, 192, 96), Material((0.9, 0.1, 0.1), 0.2, 1.0), moves,
                     torch.tensor([False, True, True]))
    box_m = torch.eye(4)
    box_m[:3, 3] = torch.tensor([0.0, 0.0, -1.5])
    wall = mesh_of(shapes.box((3.0, 2.0, 0.2)), Material((0.1, 0.8, 0.2), 0.9, 0.0), box_m)
    cam = camera(40, frames=frames, eye=(0.0, 0.2, 3.0), target=(0.0, 0.0, 0.0))
    gb, ids = rasterize([sphere, wall], cam, backend="mitsuba", return_ids=True)
    gb.validate()
    background = ids == 0
    assert torch.equal(background, gb.mask < 0.5)
    for name, x in gb.passes.items():
        assert float(x.masked_fill(~background.expand_as(x), 0).abs().max()) == 0.0, name
    assert not bool((ids[0, 0] == 1).any()) and bool((ids[0, 1:] == 1).any())  # the sphere appears at frame 1
    centres = torch.tensor([[-0.4, 0.0, 0.0], [0.0, 0.0, 0.0], [0.4, 0.0, 0.0]])
    ref = sphere_gbuffer(cam, centres[None], 0.35)
    sel = (ids == 1) & (ref.mask > 0.5)
    assert float(((gb.depth - ref.depth).abs() / ref.depth.clamp_min(1e-6))[sel].max()) < 1e-3
    on_sphere = (ids == 1)[:, :, 0]
    assert torch.equal(gb.basecolor.permute(0, 1, 3, 4, 2)[on_sphere],
                       torch.tensor([0.9, 0.1, 0.1]).expand(int(on_sphere.sum()), 3))
    assert torch.equal(gb.metallic[ids == 2], torch.zeros(int((ids == 2).sum())))


def test_scalar_fallback_matches_llvm(use_variant):
    scene = [mesh_of(shapes.torus(0.4, 0.15, 64, 32), Material((0.2, 0.4, 0.6), 0.3, 0.0)),
             mesh_of(shapes.ground_quad(3.0, 6.0), Material(torch.rand(3, 2, 2, generator=torch.Generator()
                                                                      .manual_seed(1)), 0.8, 0.0))]
    cam = camera(24, eye=(0.5, 1.2, 2.2))
    results = {}
    for variant in ("llvm_ad_rgb", "scalar_rgb"):
        use_variant(variant)
        results[variant] = rasterize(scene, cam, backend="mitsuba", return_ids=True)
    (a, ids_a), (b, ids_b) = results["llvm_ad_rgb"], results["scalar_rgb"]
    assert torch.equal(ids_a, ids_b)
    on = a.mask > 0.5
    assert float(((a.depth - b.depth).abs() / a.depth.clamp_min(1e-6))[on].max()) < 1e-5
    assert float((a.normal - b.normal).abs().max()) < 1e-4
    assert torch.equal(a.basecolor, b.basecolor) and torch.equal(a.roughness, b.roughness)


def test_our_rays_are_mitsubas_sensor_rays_through_pixel_centres(use_variant):
    mi = use_variant("llvm_ad_rgb")
    from neural_render.synth.mitsuba_scene import sensor_dict

    cam = Camera.from_fov(50.0, 20, 14, look_at(torch.tensor([[1.0, 0.7, 2.0]]), torch.tensor([[0.0, 0.2, 0.0]]))[None])
    sensor = mi.load_dict(sensor_dict(mi, cam, 0, 1))
    j, i = np.meshgrid(np.arange(20), np.arange(14))
    film = mi.Point2f(mi.Float(((j.ravel() + 0.5) / 20).astype(np.float32)),
                      mi.Float(((i.ravel() + 0.5) / 14).astype(np.float32)))
    ray, _ = sensor.sample_ray(0.0, 0.5, film, mi.Point2f(0.5, 0.5))
    d_mi = np.stack([np.array(ray.d.x), np.array(ray.d.y), np.array(ray.d.z)], 1)
    c2w = cam.camera_to_world[0, 0]
    ours = (cam.ray_directions()[0, 0].permute(1, 2, 0).reshape(-1, 3) @ c2w[:3, :3].T).numpy()
    assert np.abs(d_mi - ours).max() < 2e-6
    origin = np.stack([np.broadcast_to(np.array(c), (280,)) for c in (ray.o.x, ray.o.y, ray.o.z)], 1)
    offset = origin - c2w[:3, 3].numpy()  # Mitsuba starts camera rays on the near plane (near_clip = 1e-3)
    assert np.abs(np.cross(offset, d_mi)).max() < 1e-6 and np.linalg.norm(offset, axis=1).max() < 2e-3


def test_backend_selection_and_nvdiffrast_is_never_faked():
    from neural_render.raster.nvdiffrast_backend import nvdiffrast_available

    sphere = mesh_of(shapes.uv_sphere(0.5, 16, 8), Material(0.5, 0.5, 0.0))
    with pytest.raises(NeuralRenderError):
        resolve_backend("opengl")
    usable, reason = nvdiffrast_available()
    if usable:
        pytest.skip("CUDA + nvdiffrast present: the unavailable path cannot be exercised")
    assert reason and resolve_backend("auto") == "mitsuba"
    with pytest.raises(NeuralRenderError, match="nvdiffrast"):
        rasterize([sphere], camera(16), backend="nvdiffrast")


def test_nvdiffrast_projection_matches_our_pixel_convention():
    from neural_render.raster.nvdiffrast_backend import projection_matrix

    w, h, near, far = 40, 30, 0.1, 50.0
    k = torch.tensor([35.0, 33.0, 19.0, 16.5])
    p = projection_matrix(k, w, h, near, far).double()
    gen = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(50, 2, generator=gen) * 2 - 1, -(torch.rand(50, 1, generator=gen) * 9 + 0.5)], 1)
    clip = torch.cat([pts, torch.ones(50, 1)], 1).double() @ p.T
    ndc = clip[:, :3] / clip[:, 3:]
    col = (ndc[:, 0] + 1) / 2 * w
    row = h - (ndc[:, 1] + 1) / 2 * h  # nvdiffrast row 0 = NDC y -1; the backend flips rows
    u = k[0] * pts[:, 0] / -pts[:, 2] + k[2]
    v = k[3] - k[1] * pts[:, 1] / -pts[:, 2]
    assert torch.allclose(col, u.double(), atol=1e-4) and torch.allclose(row, v.double(), atol=1e-4)
    assert bool(((ndc[:, 2] > -1) & (ndc[:, 2] < 1)).all())


def test_mesh_validation():
    g = shapes.box()
    with pytest.raises(NeuralRenderError):
        Mesh(g.vertices, g.faces + 100, g.normals, g.uvs, Material(0.5, 0.5, 0.0))
    moving = mesh_of(g, Material(0.5, 0.5, 0.0), torch.eye(4).repeat(2, 1, 1))
    with pytest.raises(NeuralRenderError):
        rasterize([moving], camera(16, frames=3))
    with pytest.raises(NeuralRenderError):
        rasterize([], camera(16))
    assert math.isclose(float(moving.world_geometry(1)[1].norm(dim=1).mean()), 1.0, rel_tol=1e-6)
