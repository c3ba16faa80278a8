"""The README demo command end to end (small size), and its scene's exact G-buffers."""

import numpy as np
import torch

from neural_render.cli import main
from neural_render.demo.scene import demo_scene, orbit_camera, ground_gbuffer
from neural_render.io import read_clip, read_image, read_video


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "3", "--size", "48x32"]) == 0
    printed = capsys.readouterr().out
    for name in ("env_a.mp4", "env_b.mp4", "env_a_rotating.mp4", "edit_blue_metal.mp4", "contact_sheet.png"):
        assert str(out / name) in printed
    frames, _ = read_video(out / "env_a.mp4")
    assert frames.shape == (3, 32, 48, 3)
    relit, _ = read_video(out / "env_b.mp4")
    assert np.abs(frames.astype(float) - relit.astype(float)).mean() > 5  # the second light really differs
    edited, _ = read_video(out / "edit_blue_metal.mp4")
    assert np.abs(frames.astype(float) - edited.astype(float)).mean() > 0.5
    sheet = read_image(out / "contact_sheet.png")
    assert sheet.shape[1] > 9 * 48 and sheet.shape[0] > 3 * 32
    clip = read_clip(out / "scene_clip")
    assert clip.rgb.shape == (1, 3, 3, 32, 48) and clip.gbuffer.normal is not None


def test_rotating_light_by_turning_the_camera_equals_turning_the_env():
    """The demo's trick: shading with the sky turned by R equals shading with the world turned by R^T.

    90 degrees of yaw is a whole number of env columns, so baking the turned sky resamples nothing.
    """
    from neural_render.io import load_envmap
    from neural_render.data_assets import envmap_path
    from neural_render.render.rotation import euler_to_matrix
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.types import Camera

    scene = demo_scene(1, 24, 16)
    env = load_envmap(envmap_path("kiara_1_dawn"))
    direct = shade(scene.gbuffer, scene.camera, prepare_ibl(env.rotated(yaw=90.0)))
    turn = torch.eye(4)
    turn[:3, :3] = euler_to_matrix(90.0).T
    turned = Camera(scene.camera.intrinsics, turn @ scene.camera.camera_to_world, 24, 16)
    assert torch.allclose(shade(scene.gbuffer, turned, prepare_ibl(env)), direct, atol=1e-4, rtol=1e-4)


def test_ground_disk_is_exact():
    cam = orbit_camera(2, 32, 24)
    g = ground_gbuffer(cam, (0.5, 0.5, 0.5), 0.8, 0.0, 2.0)
    valid = g.mask[0, :, 0] > 0.5
    # back-project depth to world: every valid pixel lies on y = 0 within the disk
    rays = cam.ray_directions()[0, 0]  # (3, H, W)
    points_cam = rays / -rays[2:3] * g.depth[0, :, 0][:, None]  # planar depth -> point
    world = torch.einsum("tij,tjhw->tihw", cam.rotations()[0], points_cam) + cam.camera_to_world[0, :, :3, 3, None, None]
    assert float(world[:, 1][valid].abs().max()) < 1e-4
    assert float((world[:, 0] ** 2 + world[:, 2] ** 2)[valid].max()) <= 4.0 + 1e-3
    # its camera-space normal is world +Y
    n_world = torch.einsum("tij,tjhw->tihw", cam.rotations()[0], g.normal[0])
    assert torch.allclose(n_world[:, 1][valid], torch.ones(int(valid.sum())), atol=1e-5)
