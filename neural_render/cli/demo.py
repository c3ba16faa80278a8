"""``neural-render demo``: the main job on a fresh install, on 2 CPU cores, with no download.

Today it renders the analytic demo scene (exact G-buffers) with the classical split-sum shader: under two
shipped HDR env maps, under a rotating env, and with one material edited; then writes MP4s, the scene as a
clip folder and one contact sheet. Neural inverse/forward models join as they are trained and shipped.
"""

from __future__ import annotations

HELP = "render the demo scene: relight under two shipped env maps, rotate the light, edit a material; write MP4s + contact sheet"

DEFAULT_ENVMAPS = ("kiara_1_dawn", "venice_sunset")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--frames", type=int, default=24, help="frames in the clip (default 24)")
    parser.add_argument("--size", default="160x120", help="WxH in pixels (default 160x120)")
    parser.add_argument("--envmaps", nargs=2, default=list(DEFAULT_ENVMAPS), metavar=("A", "B"),
                        help="two shipped env map names (data/envmaps) or .hdr/.exr paths")
    parser.add_argument("--fps", type=float, default=12.0)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both >= 8."""
    from neural_render.errors import NeuralRenderError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NeuralRenderError(f"size must look like WxH, e.g. 160x120, got {text!r}") from None
    if w < 8 or h < 8:
        raise NeuralRenderError(f"size must be at least 8x8, got {text!r}")
    return w, h


def run(args) -> int:
    import os
    import time
    from pathlib import Path

    import torch

    from neural_render.data_assets import envmap_path
    from neural_render.demo.scene import demo_scene
    from neural_render.errors import NeuralRenderError
    from neural_render.types import Camera
    from neural_render.io import Clip, ClipMeta, load_envmap, write_clip, write_image, write_video
    from neural_render.render.rotation import euler_to_matrix
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.render.tonemap import display
    from neural_render.viz.contact_sheet import gbuffer_contact_sheet

    if args.frames < 2:
        raise NeuralRenderError(f"--frames must be >= 2, got {args.frames}")
    width, height = parse_size(args.size)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = demo_scene(args.frames, width, height)
    env_a, env_b = (load_envmap(envmap_path(name)) for name in args.envmaps)

    def render(env, gbuffer=scene.gbuffer):
        return shade(gbuffer, scene.camera, prepare_ibl(env))

    videos = {"env_a": render(env_a), "env_b": render(env_b)}
    # light turning once around the scene over the clip. Turning the sky by R_t is the same as turning the
    # world seen by the camera by R_t^T, so one prefiltered env serves every frame (exact, no re-filtering).
    yaw = torch.linspace(0.0, 360.0, args.frames + 1)[:-1]
    turn = torch.eye(4).repeat(args.frames, 1, 1)
    turn[:, :3, :3] = euler_to_matrix(yaw).transpose(-1, -2)
    turned = Camera(scene.camera.intrinsics, turn[None] @ scene.camera.camera_to_world, width, height)
    videos["env_a_rotating"] = shade(scene.gbuffer, turned, prepare_ibl(env_a))
    # material edit: the red rough sphere (id 2) becomes polished blue metal
    sel = (scene.object_ids == 2).float()
    edited = scene.gbuffer.replace(
        basecolor=scene.gbuffer.basecolor * (1 - sel) + torch.tensor([0.10, 0.25, 0.85]).reshape(1, 1, 3, 1, 1) * sel,
        roughness=scene.gbuffer.roughness * (1 - sel) + 0.08 * sel,
        metallic=scene.gbuffer.metallic * (1 - sel) + 1.0 * sel)
    videos["edit_blue_metal"] = render(env_a, edited)

    written = []
    for name, video in videos.items():
        path = out / f"{name}.mp4"
        write_video(path, display(video[0]).permute(0, 2, 3, 1).numpy(), fps=args.fps)
        written.append(path)
    env_rel = os.path.relpath(envmap_path(args.envmaps[0]).resolve(), (out / "scene_clip").resolve())
    meta = ClipMeta.for_camera(scene.camera, fps=args.fps, envmap={"path": env_rel, "rotation_deg": [0.0, 0.0, 0.0]})
    write_clip(out / "scene_clip", Clip(rgb=videos["env_a"], gbuffer=scene.gbuffer, camera=scene.camera, meta=meta))
    written.append(out / "scene_clip")
    sheet = gbuffer_contact_sheet(scene.gbuffer, videos["env_a"], extra={
        f"light {args.envmaps[1]}": videos["env_b"], "rotated light": videos["env_a_rotating"],
        "edited material": videos["edit_blue_metal"]})
    write_image(out / "contact_sheet.png", sheet)
    written.append(out / "contact_sheet.png")
    print(f"demo: {args.frames} frames at {width}x{height}, env maps {args.envmaps[0]} and {args.envmaps[1]}, "
          f"classical split-sum shader, {time.perf_counter() - start:.1f} s")
    for path in written:
        print(f"  {path}")
    return 0
