"""``neural-render eval insert --data data_cache/insert_eval_64``: object insertion against path-traced ground truth.

DATA is made by ``scripts/make_insert_eval_data.py``: per clip the scene without the object (``scene/``), the same
scene path-traced WITH the object (``with_object/``, same sampler seeds) and the object (``objects/``: mesh,
material, position, scale, id). Every method inserts the object into the scene video (G-buffers from the inverse
renderer, ``--gbuffers inverse``, default; or the exact synthetic passes, ``--gbuffers clip``, an oracle that
isolates the forward renderer) and is scored against the ground truth WITH the object.

Methods: the cache-injection model (``--model``, default shipped forward_cache_tiny) with the injection, the same
model without it (strength 0), the base forward model (``--base-model``, default shipped forward_tiny, no LoRA, no
injection), all with the differential blend (input video + render with object - render without; the object's
pixels from the render) and, as "full", the raw forward render; the classical baseline (split-sum render of the
object pasted on its pixels, nothing else changes); and the input video unchanged (no object) as a reference.

Regions (from the ground truth): ``object`` = the object's visible pixels; ``around`` = within ``--ring`` pixels of
it (the shadow / contact region); ``shadow`` = the part of ``around`` where the ground truth with and without the
object differ (3x3-blurred display difference > 0.03: the shadow and reflections actually cast); ``frame`` = all
pixels. PSNR per clip on display sRGB of clamp(x, 0, 1), then the mean over clips (clips where a region is empty
are skipped). ``--json`` writes every number.
"""

from __future__ import annotations

HELP = "evaluate object insertion (cache injection vs none vs classical paste) against path-traced ground truth"
REGIONS = ("object", "around", "shadow", "frame")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder made by scripts/make_insert_eval_data.py")
    parser.add_argument("--model", default=None, help="cache-injection forward model (default: shipped)")
    parser.add_argument("--base-model", default=None, help="plain forward model (default: shipped forward_tiny)")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline (default: shipped inverse_tiny)")
    parser.add_argument("--gbuffers", choices=("inverse", "clip"), default="inverse")
    parser.add_argument("--strength", type=float, default=None, help="injection strength (default: the model's)")
    parser.add_argument("--received-from", choices=("support", "lifted"), default="support",
                        help="injections with received shadows: what shadows the object, only the plane it stands on "
                             "(default: robust to estimated depth) or the scene lifted from its G-buffer")
    parser.add_argument("--ring", type=int, default=6, help="width in pixels of the 'around' region")
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", choices=("real", "synthetic"), default="real",
                        help="Realiz3D domain for models with shifters (default real: inverse-rendered input)")
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    parser.add_argument("--device", default="cpu")


def regions(object_mask, with_rgb, without_rgb, ring: int) -> dict:
    """GT regions (1, T, 1, H, W) bool: object, around (ring), shadow (GT change inside the ring), frame."""
    import torch
    import torch.nn.functional as F

    from neural_render.data.forward_data import display_pack

    m = object_mask.float().flatten(0, 1)
    grown = F.max_pool2d(m, 2 * ring + 1, stride=1, padding=ring) > 0.5 if ring > 0 else m > 0.5
    around = grown & ~(m > 0.5)
    diff = (display_pack(with_rgb) - display_pack(without_rgb)).abs().mean(2, keepdim=True).flatten(0, 1) * 0.5
    changed = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False) > 0.03
    shape = object_mask.shape
    return {"object": object_mask > 0.5, "around": around.reshape(shape), "shadow": (around & changed).reshape(shape),
            "frame": torch.ones_like(object_mask, dtype=torch.bool)}


def scores(pred, target, masks: dict) -> dict:
    from neural_render.data.forward_data import display_pack
    from neural_render.metrics import psnr

    a, b = (display_pack(pred) + 1.0) * 0.5, (display_pack(target) + 1.0) * 0.5
    return {name: (float(psnr(a, b, m)[0]) if bool(m.any()) else float("nan")) for name, m in masks.items()}


def injection_comparisons(per_clip: list[dict]) -> dict:
    """{other method: {region: paired_comparison(injection, other)}} over the clips (object, around, shadow) for
    the two methods the injection must beat, the same model without injection and the classical paste, and (when
    scored) the base forward model: the LoRA fine-tune alone could move the no-injection score."""
    from neural_render.metrics.inverse import paired_comparison

    out = {}
    others = ["no injection (same model)", "classical paste"]
    others += ["base model"] if all("base model" in c["scores"] for c in per_clip) else []
    for other in others:
        out[other] = {r: paired_comparison([c["scores"]["injection"][r] for c in per_clip],
                                           [c["scores"][other][r] for c in per_clip], higher_is_better=True)
                      for r in ("object", "around", "shadow")}
    return out


def load_item(data, clip_dir):
    """(scene Clip, env, ground-truth rgb, GT object mask, InsertedObject, record)."""
    import json

    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.pipelines.insert import InsertedObject
    from neural_render.raster import Material
    from neural_render.synth.dataset import read_object_ids

    name = clip_dir.name
    record_path = data / "objects" / f"{name}.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"unreadable insertion record: {err}", record_path) from None
    scene = read_clip(clip_dir)
    truth_dir = data / "with_object" / name
    truth = read_clip(truth_dir, passes=[])
    ids = torch.stack([torch.from_numpy(read_object_ids(truth_dir, t)) for t in range(truth.meta.num_frames)])
    mask = (ids.reshape(1, truth.meta.num_frames, 1, *ids.shape[-2:]) == record["object_id"]).float()
    m = record["material"]
    obj = InsertedObject(str(data / "objects" / record["mesh"]), Material(m["basecolor"], m["roughness"], m["metallic"]),
                         tuple(record["at"]), float(record["scale"]))
    return scene, read_clip_envmap(clip_dir, scene.meta), truth.rgb, mask, obj, record


def run(args) -> int:
    import json
    import math
    from pathlib import Path

    from neural_render.cli.forward import model_dir
    from neural_render.cli.insert import choose_depth_scale, forward_model_dir
    from neural_render.cli.inverse import load_model, resolve_device
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.insert import (
        CacheForwardPipeline,
        insert_object,
        naive_composite,
    )

    data = Path(args.data)
    clips = find_clips(data / "scene") if (data / "scene").is_dir() else []
    if not clips:
        raise NeuralRenderError("no scene/clip_* folders (make them with scripts/make_insert_eval_data.py)", data)
    clips = clips[: args.max_clips] if args.max_clips else clips
    device = resolve_device(args.device)
    folder, note = forward_model_dir(args.model)
    model = CacheForwardPipeline.from_pretrained(folder, device=device)
    if note or model.injection is None:
        raise NeuralRenderError("eval insert needs a model with a cache injection (--model)", folder)
    base_folder = model_dir(args.base_model)
    base = CacheForwardPipeline.from_pretrained(base_folder, device=device)
    inverse = load_model(args.inverse_model, device) if args.gbuffers == "inverse" else None
    methods = ["injection", "no injection (same model)", "base model", "injection, full", "no injection, full",
               "base model, full", "classical paste", "input video (no object)"]
    per_clip, skipped = [], []
    for clip_dir in clips:
        scene, env, truth, mask, obj, record = load_item(data, clip_dir)
        scale = float(scene.meta.depth_scale)
        if inverse is not None:
            gbuffer = inverse(scene.rgb, seed=args.seed, progress=False).gbuffer
            # estimated depth is relative: pin it to metres at the object's ground contact (as a user placing the
            # object on a surface would, and as `neural-render insert` does); the clip's true depth scale only when
            # that point is never in view
            scale = choose_depth_scale(None, None, gbuffer, scene.camera, obj, scene.meta)[0]
        else:
            gbuffer = scene.gbuffer.replace(depth=scene.gbuffer.depth / scale)
        options = {"depth_scale": scale, "seed": args.seed, "domain": args.domain}
        try:
            inj = insert_object(model, scene.rgb, scene.camera, env, obj, gbuffer, inject=True,
                                strength=args.strength, received_from=args.received_from, **options)
        except NeuralRenderError as e:  # e.g. hidden behind the estimated scene depth in every frame
            skipped.append({"clip": clip_dir.name, "reason": str(e)})
            print(f"{clip_dir.name}: skipped ({e})", flush=True)
            continue
        plain = insert_object(model, scene.rgb, scene.camera, env, obj, gbuffer, inject=False, **options)
        basic = insert_object(base, scene.rgb, scene.camera, env, obj, gbuffer, inject=False, **options)
        naive = naive_composite(scene.rgb, inj.gbuffer, scene.camera, env, inj.object_mask)
        outputs = [inj.rgb, plain.rgb, basic.rgb, inj.render, plain.render, basic.render, naive, scene.rgb]
        masks = regions(mask, truth, scene.rgb, args.ring)
        row = {"clip": clip_dir.name, "object": record.get("kind"), "pixels": {k: int(v.sum()) for k, v in masks.items()},
               "scores": {name: scores(out, truth, masks) for name, out in zip(methods, outputs)}}
        per_clip.append(row)
        s = row["scores"]
        print(f"{clip_dir.name} ({row['object']}): object PSNR inj {s['injection']['object']:.2f} / no-inj "
              f"{s['no injection (same model)']['object']:.2f} / classical {s['classical paste']['object']:.2f}; "
              f"around inj {s['injection']['around']:.2f} / no-inj {s['no injection (same model)']['around']:.2f}"
              f" / classical {s['classical paste']['around']:.2f}", flush=True)

    def mean(method: str, region: str) -> float:
        values = [r["scores"][method][region] for r in per_clip if not math.isnan(r["scores"][method][region])]
        return sum(values) / len(values) if values else float("nan")

    if not per_clip:
        raise NeuralRenderError(f"no clip could be evaluated: {skipped}", data)
    summary = {m: {r: mean(m, r) for r in REGIONS} for m in methods}
    comparisons = injection_comparisons(per_clip)
    print(f"\ninsertion PSNR (dB, display sRGB) over {len(per_clip)} clips ({len(skipped)} skipped), G-buffers: "
          f"{args.gbuffers}, model {folder}")
    print(f"{'method':28s}" + "".join(f"{r:>10s}" for r in REGIONS))
    for m in methods:
        print(f"{m:28s}" + "".join(f"{summary[m][r]:10.2f}" for r in REGIONS))
    print("\ninjection against the other methods, per-clip paired PSNR difference (dB) with its 95% bootstrap interval;"
          " 'clearly' = the whole interval above 0")
    for other, by_region in comparisons.items():
        cells = [f"{r} {c['mean_improvement']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] "
                 f"{'clearly' if c['verdict'] == 'better' else c['verdict']}" for r, c in by_region.items()]
        print(f"  vs {other}: " + "; ".join(cells))
    if args.json:
        from neural_render.io.atomic import atomic_path

        result = {"data": str(data), "model": str(folder), "base_model": str(base_folder), "gbuffers": args.gbuffers,
                  "ring": args.ring, "strength": args.strength,
                  "received_from": args.received_from, "summary": summary, "comparisons": comparisons,
                  "clips": per_clip,
                  "skipped": skipped}
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    return 0
