"""3D cache: rendering equals direct rasterization, edits (move/rotate/scale/remove/duplicate) are reflected exactly,
lifting from G-buffers reproduces the surface, bad input raises NeuralRenderError."""

import pytest
import torch

from neural_render.errors import NeuralRenderError
from neural_render.models.cache3d import Cache3D, placement
from neural_render.raster import Material, Mesh, rasterize
from neural_render.render.rotation import euler_to_matrix
from neural_render.synth import shapes
from neural_render.types import Camera, look_at

torch.set_num_threads(1)
T = 3


def camera(frames: int = T) -> Camera:
    eyes = torch.tensor([[0.4 * k, 1.2, 3.0] for k in range(frames)])
    c2w = torch.stack([look_at(e, (0.0, 0.3, 0.0)) for e in eyes])
    return Camera.from_fov(50.0, 40, 30, c2w[None])


def box_mesh(position=(0.3, 0.3, 0.0), scale=0.7, name="box") -> Mesh:
    g = shapes.box((0.6, 0.8, 0.5))  # asymmetric: rotations show
    return Mesh(g.vertices, g.faces, g.normals, g.uvs, Material((0.6, 0.2, 0.1), 0.4, 0.0),
                placement(position, scale), name=name)


def sphere_mesh(position=(-0.5, 0.2, -0.3), name="ball", scale=0.6) -> Mesh:
    g = shapes.uv_sphere(0.5, 24, 12)
    return Mesh(g.vertices, g.faces, g.normals, g.uvs, Material(0.8, 0.2, 1.0), placement(position, scale), name=name)


def assert_same_render(render, gbuffer, atol: float = 0.0):
    assert torch.equal(render.mask, gbuffer.mask)
    if atol == 0.0:
        assert torch.equal(render.normal, gbuffer.normal * gbuffer.mask)
        assert torch.equal(render.depth, gbuffer.depth)
    else:
        assert torch.allclose(render.normal, gbuffer.normal * gbuffer.mask, atol=atol, rtol=0)
        assert torch.allclose(render.depth, gbuffer.depth, atol=atol, rtol=0)


def test_render_matches_direct_rasterization_and_ids():
    cam = camera()
    cache = Cache3D(T)
    cache.add(box_mesh())
    cache.add(sphere_mesh())
    render = cache.render(cam, backend="mitsuba")
    gbuffer, ids = rasterize([box_mesh(), sphere_mesh()], cam, backend="mitsuba", return_ids=True)
    assert_same_render(render, gbuffer)
    assert torch.equal(render.entity_id, ids)
    assert render.names == ["box", "ball"]
    assert float(render.entity_mask("ball").sum()) > 50 and float(render.entity_mask("box").sum()) > 50
    # normals are unit on the mask and zero elsewhere
    length = render.normal.norm(dim=2, keepdim=True)
    assert float(((length - 1).abs() * render.mask).max()) < 1e-4
    assert float((length * (1 - render.mask)).max()) == 0.0


def test_move_rotate_scale_match_directly_placed_meshes():
    cam = camera()
    cache = Cache3D(T)
    cache.add(box_mesh(position=(0.3, 0.3, 0.0), scale=0.7))
    cache.move("box", (-0.2, 0.1, 0.25))
    direct = rasterize([box_mesh(position=(0.1, 0.4, 0.25), scale=0.7)], cam, backend="mitsuba")
    assert_same_render(cache.render(cam, backend="mitsuba"), direct, atol=2e-6)

    # rotation about the bounding-box centre (= the placement position: the box is centred at its origin)
    cache.rotate("box", (35.0, 10.0, -20.0))
    rot = euler_to_matrix(35.0, 10.0, -20.0, dtype=torch.float64)
    direct = rasterize([Mesh(**{**_fields(box_mesh()), "to_world": placement((0.1, 0.4, 0.25), 0.7, rot)})], cam,
                       backend="mitsuba")
    render = cache.render(cam, backend="mitsuba")
    assert_same_render(render, direct, atol=2e-5)
    unrotated = rasterize([box_mesh(position=(0.1, 0.4, 0.25))], cam, backend="mitsuba")
    assert not torch.equal(render.mask, unrotated.mask)  # the edit is visible: the test can fail

    cache.scale("box", 1.3)
    direct = rasterize([Mesh(**{**_fields(box_mesh()), "to_world": placement((0.1, 0.4, 0.25), 0.7 * 1.3, rot)})],
                       cam, backend="mitsuba")
    assert_same_render(cache.render(cam, backend="mitsuba"), direct, atol=2e-5)


def _fields(mesh: Mesh) -> dict:
    return {"vertices": mesh.vertices, "faces": mesh.faces, "normals": mesh.normals, "uvs": mesh.uvs,
            "material": mesh.material, "name": mesh.name}


def test_per_frame_move_and_remove_and_duplicate():
    cam = camera()
    cache = Cache3D(T)
    cache.add(box_mesh())
    cache.add(sphere_mesh())
    cache.move("ball", (0.0, 0.5, 0.0), frames=[1])  # only frame 1 moves
    poses = torch.stack([placement((-0.5, 0.2, -0.3), 0.6), placement((-0.5, 0.7, -0.3), 0.6),
                         placement((-0.5, 0.2, -0.3), 0.6)])
    moved = Mesh(**{**_fields(sphere_mesh()), "to_world": poses})
    direct = rasterize([box_mesh(), moved], cam, backend="mitsuba")
    assert_same_render(cache.render(cam, backend="mitsuba"), direct, atol=2e-6)

    cache.remove("box")
    assert cache.names == ["ball"]
    assert_same_render(cache.render(cam, backend="mitsuba"), rasterize([moved], cam, backend="mitsuba"), atol=2e-6)

    copy_name = cache.duplicate("ball", offset=(1.0, 0.0, 0.0))
    assert copy_name == "ball_1" and cache.names == ["ball", "ball_1"]
    shifted = Mesh(**{**_fields(sphere_mesh()), "to_world": poses + torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 0],
                                                                                   [0, 0, 0, 0], [0, 0, 0, 0]])})
    render = cache.render(cam, backend="mitsuba")
    assert_same_render(render, rasterize([moved, shifted], cam, backend="mitsuba"), atol=2e-6)

    cache.set_visible("ball_1", False, frames=[0, 2])
    render = cache.render(cam, backend="mitsuba")
    ball = render.entity_mask("ball_1")
    assert float(ball[:, [0, 2]].sum()) == 0 and float(ball[:, 1].sum()) > 0

    cache.remove("ball").remove("ball_1")
    empty = cache.render(cam, backend="mitsuba")
    assert float(empty.mask.abs().sum() + empty.normal.abs().sum() + empty.depth.abs().sum()) == 0.0


def test_edits_on_a_copy_leave_the_original_untouched():
    cache = Cache3D(T)
    cache.add(box_mesh())
    before = cache.entity("box").mesh.to_world.clone()
    edited = cache.copy().move("box", (1.0, 0.0, 0.0))
    assert torch.equal(cache.entity("box").mesh.to_world, before)
    assert not torch.equal(edited.entity("box").mesh.to_world, before)


def test_lift_from_gbuffer_reproduces_the_surface():
    cam = camera()
    mesh = sphere_mesh(position=(0.0, 0.3, 0.0), scale=1.4)
    gbuffer = rasterize([mesh], cam, backend="mitsuba")
    cache = Cache3D(T)
    cache.lift(gbuffer, cam, gbuffer.mask, name="lifted", frame=0)
    assert cache.entity("lifted").source == "lifted"
    render = cache.render(cam, backend="mitsuba")
    for frame in range(T):  # the lifted static surface seen again by every camera of the clip
        both = (render.mask[0, frame, 0] > 0) & (gbuffer.mask[0, frame, 0] > 0)
        assert int(both.sum()) > 0.5 * float(render.mask[0, frame].sum()) > 20
        depth_err = (render.depth - gbuffer.depth)[0, frame, 0][both].abs() / gbuffer.depth[0, frame, 0][both]
        assert float(depth_err.median()) < 0.01 and float(depth_err.max()) < 0.05  # silhouettes: chords vs arcs
        cos = (render.normal * gbuffer.normal).sum(2)[0, frame][both]
        assert float(cos.median()) > 0.99 and float(cos.min()) > 0.9
    # frame 0 (the lifted view): pixel-centre vertices reproduce depth and normal exactly where re-rendered
    both = (render.mask[0, 0, 0] > 0) & (gbuffer.mask[0, 0, 0] > 0)
    assert float((render.depth - gbuffer.depth)[0, 0, 0][both].abs().max()) < 1e-4
    # the basecolor texture came along
    lifted_gb = rasterize(cache.meshes(["lifted"]), cam, backend="mitsuba")
    sel = lifted_gb.mask[0, 0, 0] > 0
    assert torch.allclose(lifted_gb.basecolor[0, 0][:, sel], gbuffer.basecolor[0, 0][:, sel])


def test_lift_frames_gives_each_frame_its_own_surface():
    """Moving sphere: entity t is frame t's lifted surface, visible only in frame t; an empty frame adds nothing."""
    cam = camera()
    mesh = sphere_mesh(position=(0.0, 0.3, 0.0), scale=1.4)
    mesh.to_world = torch.stack([placement((0.3 * k - 0.3, 0.3, 0.0), 1.4) for k in range(T)])
    gbuffer = rasterize([mesh], cam, backend="mitsuba")
    mask = gbuffer.mask.clone()
    mask[:, 1] = 0.0  # frame 1 selects nothing
    cache = Cache3D(T)
    names = cache.lift_frames(gbuffer, cam, mask, name="scene")
    assert names == ["scene_t0", "scene_t2"]
    for name, frame in zip(names, (0, 2)):
        assert cache.entity(name).mesh.visible.tolist() == [k == frame for k in range(T)]
    render = cache.render(cam, backend="mitsuba")
    assert float(render.mask[0, 1].sum()) == 0.0
    for frame in (0, 2):  # each frame re-rendered from its own lift: depth reproduced at pixel centres
        both = (render.mask[0, frame, 0] > 0) & (gbuffer.mask[0, frame, 0] > 0)
        assert int(both.sum()) > 0.6 * float(gbuffer.mask[0, frame].sum())  # silhouette pixels lost
        assert float((render.depth - gbuffer.depth)[0, frame, 0][both].abs().max()) < 1e-4


def test_bad_input_raises(tmp_path):
    cache = Cache3D(T)
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"this is not a mesh")
    with pytest.raises(NeuralRenderError, match="broken.glb"):
        cache.add_mesh_file(bad)
    with pytest.raises(NeuralRenderError):
        cache.add_mesh_file(tmp_path / "missing.obj")
    assert len(cache) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["broken.glb"]
    cache.add(box_mesh())
    assert cache.add(box_mesh()) == "box_1"  # unnamed: a fresh name
    with pytest.raises(NeuralRenderError, match="already exists"):
        cache.add(box_mesh(), name="box")
    with pytest.raises(NeuralRenderError, match="no entity"):
        cache.move("nope", (0, 0, 0))
    with pytest.raises(NeuralRenderError):
        cache.scale("box", -1.0)
    with pytest.raises(NeuralRenderError):
        cache.move("box", (0, float("nan"), 0))
    with pytest.raises(NeuralRenderError):
        cache.move("box", (1, 0, 0), frames=[T])
    with pytest.raises(NeuralRenderError, match="frames"):
        cache.render(camera(T + 1), backend="mitsuba")
    gbuffer = rasterize([box_mesh()], camera(), backend="mitsuba")
    with pytest.raises(NeuralRenderError, match="no connected surface"):
        cache.lift(gbuffer, camera(), torch.zeros_like(gbuffer.mask), name="nothing")


def test_add_mesh_file_places_the_normalised_mesh(tmp_path):
    import trimesh

    path = tmp_path / "cube.ply"
    trimesh.creation.box(extents=(2.0, 2.0, 2.0)).export(path)
    cache = Cache3D(T)
    name = cache.add_mesh_file(path, Material(0.5, 0.5, 0.0), position=(0.0, 0.25, 0.0), scale=0.5)
    assert name == "cube" and cache.entity(name).source == "file"
    world = cache.entity(name).mesh.world_geometry(0)[0]
    assert torch.allclose(world.amin(0), torch.tensor([-0.25, 0.0, -0.25]), atol=1e-6)
    assert torch.allclose(world.amax(0), torch.tensor([0.25, 0.5, 0.25]), atol=1e-6)
    assert float(cache.render(camera(), backend="mitsuba").mask.sum()) > 0
