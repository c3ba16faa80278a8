"""Ground-truth forward flow against hand-computed motion: moving card, moving camera, rotation-only sky,
occlusion and vanishing objects."""

import math

import torch

from neural_render.raster import Material, Mesh, rasterize
from neural_render.synth import shapes
from neural_render.synth.flow import forward_flow
from neural_render.types import Camera, look_at

SIZE = 40


def mesh(geometry, to_world, visible=None):
    return Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, Material(0.5, 0.5, 0.0),
                to_world, visible)


def translations(xyz_per_frame):
    m = torch.eye(4).repeat(len(xyz_per_frame), 1, 1)
    m[:, :3, 3] = torch.tensor(xyz_per_frame, dtype=torch.float32)
    return m


def flow_of(meshes, cam):
    gb, ids = rasterize(meshes, cam, backend="mitsuba", return_ids=True)
    flow, valid = forward_flow(gb.depth[0], ids[0], cam, meshes)
    return gb, ids[0], flow, valid


def static_camera(frames):
    return Camera.from_fov(50.0, SIZE, SIZE, torch.eye(4).repeat(1, frames, 1, 1))


def test_moving_card_in_front_of_a_wall():
    cam = static_camera(3)
    wall = mesh(shapes.box((20.0, 20.0, 0.1)), translations([[0, 0, -6.0]] * 3))
    card = mesh(shapes.box((1.0, 1.0, 0.02)), translations([[-0.3, 0, -3.0], [-0.1, 0, -3.0], [0.1, 0, -3.0]]))
    gb, ids, flow, valid = flow_of([wall, card], cam)
    fx = float(cam.intrinsics[0, 0])
    on_card = ids[0, 0] == 2
    expected = fx * 0.2 / (3.0 - 0.01)  # card front face at z = -2.99, moves 0.2 units right per frame
    assert int(on_card.sum()) > 50
    assert torch.allclose(flow[0, 0][on_card], torch.full((int(on_card.sum()),), expected), atol=1e-3)
    assert float(flow[0, 1][on_card].abs().max()) < 1e-3
    assert bool((valid[0, 0][on_card] == 1).all())
    on_wall = ids[0, 0] == 1
    assert float(flow[0][:, on_wall].abs().max()) < 1e-3  # static wall, static camera
    covered_next = on_wall & (ids[1, 0] == 2)  # wall pixels the card moves over: occluded at t + 1
    assert int(covered_next.sum()) > 10
    assert bool((valid[0, 0][covered_next] == 0).all())
    assert bool((valid[0, 0][on_wall & (ids[1, 0] == 1)] == 1).all())
    assert float(valid[-1].abs().max()) == 0 and float(flow[-1].abs().max()) == 0  # no frame after the last


def test_camera_translation_and_vanishing_object():
    eyes = torch.tensor([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0]])
    cam = Camera.from_fov(50.0, SIZE, SIZE, look_at(eyes, eyes + torch.tensor([0.0, 0.0, -1.0]))[None])
    wall = mesh(shapes.box((20.0, 20.0, 0.1)), translations([[0, 0, -4.05]] * 2))  # front face at z = -4
    ghost = mesh(shapes.uv_sphere(0.4, 32, 16), translations([[0.0, 0.0, -2.0]] * 2), torch.tensor([True, False]))
    gb, ids, flow, valid = flow_of([wall, ghost], cam)
    fx = float(cam.intrinsics[0, 0])
    on_wall = ids[0, 0] == 1
    assert torch.allclose(flow[0, 0][on_wall], torch.full((int(on_wall.sum()),), -fx * 0.15 / 4.0), atol=1e-3)
    ghost_px = ids[0, 0] == 2
    assert int(ghost_px.sum()) > 20 and bool((valid[0, 0][ghost_px] == 0).all())  # it is gone at t + 1
    revealed = valid[0, 0][on_wall]
    assert float(revealed.mean()) > 0.8


def test_background_flow_is_rotation_only():
    yaw = math.radians(4.0)
    targets = torch.tensor([[0.0, 0.0, -1.0], [-math.sin(yaw), 0.0, -math.cos(yaw)]])
    cam = Camera.from_fov(60.0, SIZE, SIZE, look_at(torch.zeros(2, 3), targets)[None])
    tiny = mesh(shapes.uv_sphere(0.05, 16, 8), translations([[0.0, 5.0, 0.0]] * 2))  # out of view
    gb, ids, flow, valid = flow_of([tiny], cam)
    assert int(ids.sum()) == 0
    fx, _, cx, _ = cam.intrinsics[0].tolist()
    # centre row: a direction at horizontal pixel u has angle atan((u - cx) / fx); turning left by 4 degrees
    # shifts it right: u' = cx + fx * tan(angle + 4 deg)
    u = torch.arange(SIZE) + 0.5
    expected = cx + fx * torch.tan(torch.atan((u - cx) / fx) + yaw) - u
    row = SIZE // 2  # its centre is half a pixel below the optical axis: the formula holds to ~1e-2 px
    assert torch.allclose(flow[0, 0, row], expected, atol=0.05)
    assert float(flow[0, 1, row].abs().max()) < 0.05
    inside = (u + expected >= 0) & (u + expected < SIZE)
    assert torch.equal(valid[0, 0, row].bool(), inside)
