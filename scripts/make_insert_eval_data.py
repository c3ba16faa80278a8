#!/usr/bin/env python
"""Make the object-insertion evaluation set: the same synthetic scene path-traced WITHOUT and WITH an inserted object.

    python scripts/make_insert_eval_data.py --out data_cache/insert_eval_64 [--clips 24] [--size 64x64] [--spp 64]
    python scripts/make_insert_eval_data.py --split val|test --out DIR    (issue #22: the split's env maps, held-out
                                          shape / material families and sky ranges, and its seed unless --seed)

Layout of ``--out`` (resumable: finished clips are skipped; every clip folder is written atomically)::

    insert_eval.json            the arguments (a re-run with other ones is refused)
    scene/envmaps/, scene/clip_NNNNNN/               the scene without the object (a `neural-render synth` clip)
    with_object/envmaps/, with_object/clip_NNNNNN/   the same scene + the object: ground truth (rgb, G-buffers, ids)
    objects/clip_NNNNNN.obj     the inserted mesh (what `neural-render insert --mesh` reads)
    objects/clip_NNNNNN.json    {"mesh", "material": {basecolor (linear RGB), roughness, metallic}, "at" [x, y, z],
                                 "scale", "object_id" (its id in with_object's object-id maps), "kind"}

Scenes come from the data engine (:func:`neural_render.synth.scene.generate_scene`) with the HELD-OUT test env maps,
seed 4000 (unseen by training), always with a ground plane so the object casts a visible shadow. The object (a
procedural shape saved as OBJ and re-loaded with the same loader the CLI uses, so its geometry is bit-identical)
gets a constant random material and is placed on the ground near the camera target where it overlaps no scene
object in any frame and covers at least ``--min-pixels`` pixels in every frame (checked by rasterizing first).
Both versions are path-traced with the same per-frame sampler seeds. No change to neural_render.synth is needed:
the "with" scene is the generated SynthScene with one more mesh appended.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

SEED = 4000
KINDS = ("sphere", "box", "cylinder", "torus", "superquadric")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=24, help="clips made (scenes without a free spot are skipped)")
    p.add_argument("--size", default="64x64", help="WIDTHxHEIGHT")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--spp", type=int, default=64)
    p.add_argument("--seed", type=int, default=None, help=f"scene seed (default: the --split's, else {SEED})")
    p.add_argument("--split", choices=("val", "test"), default=None,
                   help="a split of neural_render/synth/splits.py (without it: the former test maps, now val)")
    p.add_argument("--min-pixels", type=int, default=40)
    return p.parse_args(argv)


def object_geometry(kind: str, rng: np.random.Generator):
    from neural_render.synth import shapes

    if kind == "sphere":
        return shapes.uv_sphere(0.5, 48, 24)
    if kind == "box":
        return shapes.box(tuple(rng.uniform(0.5, 1.0, 3)))
    if kind == "cylinder":
        return shapes.cylinder(0.5 * rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), 48)
    if kind == "torus":
        return shapes.torus(0.35, 0.12, 48, 24)
    return shapes.superquadric(tuple(rng.uniform(0.3, 0.5, 3)), float(rng.uniform(0.3, 1.5)),
                               float(rng.uniform(0.3, 1.5)), 48, 36)


def save_obj(path: Path, geometry) -> None:
    """Write an OBJ (positions, normals, uvs) atomically."""
    from neural_render.io.atomic import atomic_path

    lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in geometry.vertices]
    lines += [f"vn {x:.7g} {y:.7g} {z:.7g}" for x, y, z in geometry.normals]
    lines += [f"vt {u:.7g} {v:.7g}" for u, v in geometry.uvs]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}/{i + 1}" for i in face) for face in geometry.faces]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def scene_object_positions(scene) -> list[tuple[np.ndarray, float]]:
    """(per-frame xz positions (T, 2), bounding radius) of every non-ground mesh of the scene."""
    out = []
    for mesh, info in zip(scene.meshes, scene.objects):
        if info["kind"] == "ground":
            continue
        t = scene.camera.num_frames
        xz = np.stack([mesh.transform(f)[[0, 2], 3].numpy() for f in range(t)])
        out.append((xz, float(info.get("bounding_radius", 0.5))))
    return out


def place_object(scene, geometry, rng: np.random.Generator, min_pixels: int):
    """(Mesh, info dict) for an object placed on the ground, or None when no placement works."""
    from neural_render.models.cache3d import placement
    from neural_render.raster import Material, Mesh, rasterize

    target = np.asarray(scene.trajectory["target"], dtype=np.float64)
    others = scene_object_positions(scene)
    lo = geometry.bounds()[0]
    basecolor = [float(v) for v in rng.uniform(0.1, 0.9, 3)]
    roughness = float(rng.uniform(0.15, 0.9))
    metallic = float(rng.uniform() < 0.25)
    material = Material(basecolor, roughness, metallic, name="inserted")
    for _ in range(60):
        scale = float(rng.uniform(0.35, 0.6))
        radius = scale * float(np.sqrt((geometry.vertices[:, [0, 2]] ** 2).sum(1)).max())
        x, z = target[0] + rng.uniform(-0.8, 0.8), target[2] + rng.uniform(-0.8, 0.8)
        if any(np.hypot(xz[:, 0] - x, xz[:, 1] - z).min() < radius + r + 0.05 for xz, r in others):
            continue
        at = (float(x), float(-lo[1] * scale), float(z))
        mesh = Mesh(geometry.vertices, geometry.faces, geometry.normals, geometry.uvs, material,
                    placement(at, scale), name="inserted")
        _, ids = rasterize([*scene.meshes, mesh], scene.camera, backend="mitsuba", return_ids=True)
        pixels = (ids == len(scene.meshes) + 1).flatten(2).sum(2)[0]
        if int(pixels.min()) >= min_pixels:
            info = {"material": {"basecolor": basecolor, "roughness": roughness, "metallic": metallic},
                    "at": list(at), "scale": scale, "object_id": len(scene.meshes) + 1,
                    "min_pixels": int(pixels.min())}
            return mesh, info
    return None


def main(argv=None) -> int:
    from neural_render.data_assets import envmap_path, envmap_split
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_path
    from neural_render.io.clip import is_complete_clip
    from neural_render.io.hdr import load_envmap, write_hdr
    from neural_render.synth.dataset import clip_name, fit_envmap, write_synth_clip
    from neural_render.synth.render import render_clip
    from neural_render.synth.scene import SynthConfig, generate_scene
    from neural_render.synth.shapes import load_mesh_file

    args = parse_args(argv)
    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.lower().split("x"))
    config = SynthConfig(width=width, height=height, num_frames=args.frames, spp=args.spp, ground_prob=1.0,
                         min_objects=1, max_objects=4)
    maps = "val"
    if args.split is not None:
        from neural_render.synth.splits import get_split

        split = get_split(args.split)
        config, maps = split.configure(config), split.envmaps
        args.seed = split.seed if args.seed is None else args.seed
    args.seed = SEED if args.seed is None else args.seed
    out = Path(args.out)
    spec = {"seed": args.seed, "config": config.to_dict(), "envmaps": "test", "clips_requested": None}
    if args.split is not None:
        spec.update(envmaps=maps, split=args.split)
    spec_path = out / "insert_eval.json"
    out.mkdir(parents=True, exist_ok=True)
    if spec_path.exists():
        if json.loads(spec_path.read_text()) != spec:
            raise NeuralRenderError("folder holds an insertion set made with other arguments; use another --out",
                                    spec_path)
    else:
        with atomic_path(spec_path) as tmp:
            Path(tmp).write_text(json.dumps(spec, indent=1) + "\n")
    # the maps called "test" before issue #22 (the spec's "envmaps": "test" is kept so existing sets stay valid):
    # they are data/envmaps/split.json's "val" maps now, as these sets were used to choose the insertion model
    envs = [fit_envmap(load_envmap(envmap_path(n)), config.env_height) for n in envmap_split()[maps]]
    for side in ("scene", "with_object"):
        for env in envs:
            path = out / side / "envmaps" / f"{env.name}.exr"
            if not path.exists():
                write_hdr(path, env.image.permute(1, 2, 0).numpy())
    made, index = 0, 0
    while made < args.clips:
        name = clip_name(index)
        index += 1
        info_path = out / "objects" / f"{name}.json"
        if (info_path.exists() and is_complete_clip(out / "scene" / name)
                and is_complete_clip(out / "with_object" / name)):
            made += 1
            continue
        scene = generate_scene(config, args.seed, index - 1, envs)
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, index - 1, 77]))
        kind = str(rng.choice(KINDS))
        mesh_path = out / "objects" / f"{name}.obj"
        mesh_path.parent.mkdir(parents=True, exist_ok=True)
        save_obj(mesh_path, object_geometry(kind, rng))
        geometry = load_mesh_file(mesh_path)  # exactly what `neural-render insert --mesh` will load
        placed = place_object(scene, geometry, rng, args.min_pixels)
        if placed is None:
            print(f"{name}: no placement found, skipped", flush=True)
            mesh_path.unlink()
            continue
        mesh, info = placed
        with_scene = dataclasses.replace(scene, meshes=[*scene.meshes, mesh],
                                         objects=[*scene.objects, {"kind": f"inserted:{kind}", "id": info["object_id"],
                                                                   "material": mesh.material.summary()}])
        for side, s in (("scene", scene), ("with_object", with_scene)):
            if not is_complete_clip(out / side / name):
                write_synth_clip(out / side / name, s, render_clip(s))
        with atomic_path(info_path) as tmp:
            Path(tmp).write_text(json.dumps({"mesh": mesh_path.name, "kind": kind, **info}, indent=1) + "\n")
        made += 1
        print(f"{name}: {kind} at {[round(v, 3) for v in info['at']]} scale {info['scale']:.2f}, "
              f">= {info['min_pixels']} px per frame", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
