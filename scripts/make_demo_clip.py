"""Render the small clip that ``neural-render demo`` ships with: data/clips/demo_lebombo/ (re-runnable, seeded).

    python scripts/make_demo_clip.py                   # writes data/clips/demo_lebombo (replaces it atomically)
    python scripts/make_demo_clip.py --out /tmp/x --seed 3 --preview

One clip of the synthetic data engine (neural_render/synth: procedural PBR objects on a ground, Mitsuba 3 path
tracing), 16 frames of 128 x 96 pixels, lit by ``lebombo`` — a TEST env map of data/envmaps/split.json, so no
shipped model was trained under that light — with a fixed seed and 256 samples per pixel (low noise).

What is stored (about 0.3 MB, so it can live in git):

* ``meta.json``: the clip meta (io/clip_meta.py): cameras (camera_to_world, OpenGL axes, metres), intrinsics (pixels),
  fps, ``envmap`` = {"path": "../../envmaps/lebombo.hdr" (relative to the clip folder), rotation_deg, rotation_matrix}
  and ``extra["synth"]`` (seed, config, objects with their materials, trajectory, frame seeds);
* ``rgb.mp4``: the path-traced linear RGB as display sRGB of clamp(rgb, 0, 1) in a LOSSLESS 8-bit MP4 (libx264rgb),
  i.e. ``rgb_source == "mp4"``;
* ``frames/object_id_%06d.exr``: per-pixel object id (0 = background / sky, 1 = ground, 2.. = objects), the synth
  layout (``neural_render.synth.dataset.read_object_ids``). Ground-truth G-buffers are NOT shipped (the demo
  estimates them with the inverse model; re-run with ``--gbuffers`` to keep them, ~1.5 MB more).

Takes about a minute on 2 CPU cores (Mitsuba llvm_ad_rgb).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
NAME = "demo_lebombo"
ENVMAP = "lebombo"  # a test env map (data/envmaps/split.json)
SEED = 2            # chosen for a ground + 4 objects filling ~20 % of every frame, no spawning mid-clip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "data" / "clips" / NAME), help="clip folder to (re)write")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--envmap", default=ENVMAP, help="shipped env map name (should be a test one)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="128x96", help="WxH")
    parser.add_argument("--spp", type=int, default=256, help="path-tracing samples per pixel")
    parser.add_argument("--gbuffers", action="store_true", help="also store the exact G-buffers (EXR, ~1.5 MB)")
    parser.add_argument("--preview", action="store_true", help="also write preview.png (contact sheet) beside --out")
    return parser.parse_args(argv)


def edit_object(ids) -> int:
    """Id of the object (>= 2; 1 is the ground) covering the most pixels over the clip. ids: (T, H, W) long."""
    counts = torch.bincount(ids.flatten())
    counts[:2] = 0
    return int(counts.argmax())


def insert_spot(depth, ids, camera, radius_px: int = 6) -> dict:
    """Where the demo inserts its object: a free ground point seen in every frame -> {"at": [x, y, z], "scale": s}.

    depth: (T, H, W) exact planar depth (metres); ids: (T, H, W) object ids; camera: the clip's Camera (B=1).
    Candidates are ground pixels of the middle frame (lower half, nearest the image's lower-right third first),
    back-projected with the exact depth; a candidate is kept when its projection lands on ground (id 1) with
    ``radius_px`` pixels of clearance in EVERY frame. The object (largest extent ``scale`` metres) sits on it.
    """
    t_count, h, w = depth.shape
    mid = t_count // 2
    rays = camera.ray_directions()[0, 0]  # (3, H, W) camera space, OpenGL (looks along -Z)
    c2w = camera.camera_to_world[0]  # (T, 4, 4)
    fx, fy, cx, cy = camera.intrinsics[0].tolist()
    ground = ids == 1
    free = -torch.nn.functional.max_pool2d(-ground.float()[:, None], 2 * radius_px + 1, 1, radius_px)[:, 0] > 0.5
    ys, xs = torch.meshgrid(torch.arange(h // 2, h - radius_px), torch.arange(radius_px, w - radius_px),
                            indexing="ij")
    order = torch.argsort(((ys - 0.75 * h) ** 2 + (xs - 0.7 * w) ** 2).flatten().float())
    for index in order.tolist():
        y, x = int(ys.flatten()[index]), int(xs.flatten()[index])
        if not free[mid, y, x]:
            continue
        point_cam = rays[:, y, x] / -rays[2, y, x] * depth[mid, y, x]
        point = c2w[mid, :3, :3] @ point_cam + c2w[mid, :3, 3]  # world, on the ground
        cam_pts = torch.einsum("tij,tj->ti", torch.linalg.inv(c2w[:, :3, :3]), point[None] - c2w[:, :3, 3])
        u = (fx * cam_pts[:, 0] / -cam_pts[:, 2] + cx - 0.5).round().long()  # pixel centres at +0.5
        v = (cy - fy * cam_pts[:, 1] / -cam_pts[:, 2] - 0.5).round().long()
        if not ((u >= 0) & (u < w) & (v >= 0) & (v < h) & (cam_pts[:, 2] < 0)).all():
            continue
        if all(bool(free[t, v[t], u[t]]) for t in range(t_count)):
            distance = float(cam_pts[:, 2].abs().min())
            scale = round(0.15 * distance, 3)
            at = [round(float(point[0]), 4), round(float(point[1]) + scale / 2, 4), round(float(point[2]), 4)]
            return {"at": at, "scale": scale}
    raise SystemExit("no free ground spot seen in every frame: try another --seed")


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from neural_render.data_assets import envmap_path, envmap_split
    from neural_render.io import Clip, ClipMeta, load_envmap, write_clip
    from neural_render.io.exr import write_exr
    from neural_render.synth.dataset import OBJECT_ID_FILE, fit_envmap
    from neural_render.synth.frame_size import parse_size
    from neural_render.synth.render import render_clip
    from neural_render.synth.scene import SynthConfig, generate_scene
    from neural_render.types import GBuffer
    from neural_render.types.gbuffer import depth_scale_of

    if args.envmap not in envmap_split()["val"] + envmap_split()["test"]:
        print(f"warning: {args.envmap} is not a held-out (val / test) env map; shipped models may have been trained "
              "under it")
    width, height = parse_size(args.size)
    start = time.perf_counter()
    config = SynthConfig(width=width, height=height, num_frames=args.frames, spp=args.spp, fps=8.0, min_objects=3,
                         max_objects=4, ground_prob=1.0, spawn_prob=0.0, user_mesh_prob=0.0)
    env_file = envmap_path(args.envmap)
    scene = generate_scene(config, args.seed, 0, [fit_envmap(load_envmap(env_file), config.env_height)])
    rendered = render_clip(scene)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env_rel = os.path.relpath(env_file.resolve(), out.resolve())
    ids = rendered.object_id[0, :, 0]  # (T, H, W) long
    depth_scale = float(depth_scale_of(rendered.gbuffer.depth, rendered.gbuffer.mask)[0])
    demo = {"edit_object_id": edit_object(ids),
            "insert": insert_spot(rendered.gbuffer.depth[0, :, 0], ids, scene.camera)}
    meta = ClipMeta.for_camera(scene.camera, fps=config.fps, depth_scale=depth_scale, extra={
        "synth": scene.description(), "made_by": "scripts/make_demo_clip.py", "demo": demo,
        "aux_files": {"object_id": OBJECT_ID_FILE.replace("{:06d}", "%06d")}},
        envmap={"path": env_rel, "rotation_deg": list(scene.env_rotation_deg),
                "rotation_matrix": scene.env.rotation.tolist()})
    gbuffer = rendered.gbuffer if args.gbuffers else GBuffer()
    clip = Clip(rgb=rendered.rgb, gbuffer=gbuffer, camera=scene.camera, meta=meta)
    write_clip(out, clip, rgb_format="mp4", preview_mp4=False)
    for t in range(ids.shape[0]):  # written after the atomic clip write; a killed run leaves an id-less clip
        write_exr(out / OBJECT_ID_FILE.format(t), {"object_id.Y": ids[t].numpy().astype(np.float32)})
    if args.preview:
        from neural_render.io import write_image
        from neural_render.viz.contact_sheet import gbuffer_contact_sheet
        write_image(out.with_name(out.name + "_preview.png"), gbuffer_contact_sheet(rendered.gbuffer, rendered.rgb))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"demo settings: {demo}")
    print(f"{out}: {args.frames} frames {width}x{height}, {args.spp} spp, env {args.envmap}, seed {args.seed}, "
          f"{size / 1e6:.2f} MB, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
