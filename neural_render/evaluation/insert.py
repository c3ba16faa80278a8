"""Object-insertion evaluation (``neural-render eval insert``) against path-traced ground truth.

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
are skipped). Comparisons (Holm-corrected hierarchical bootstrap over env maps then clips, :mod:`.stats`): the
injection against the same model without it, the classical paste, the base model (when scored) AND the input video
returned unchanged (no object), in the object / around / shadow regions; a row drops the clips whose region is empty.
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

REGIONS = ("object", "around", "shadow", "frame")
METHODS = ("injection", "no injection (same model)", "base model", "injection, full", "no injection, full",
           "base model, full", "classical paste", "input video (no object)")
#: what the injection must beat, in the regions where inserting an object changes something
OTHERS = ("no injection (same model)", "classical paste", "base model", "input video (no object)")


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


def injection_comparisons(per_clip: list[dict], groups: list[str] | None = None, seed: int = 0) -> dict:
    """:func:`~neural_render.evaluation.stats.compare_table` of the injection against every method of :data:`OTHERS`
    that was scored, in the object / around / shadow regions (PSNR, higher is better), Holm over the whole table;
    ``groups``: the clips' env-map labels (default: every clip its own group)."""
    from neural_render.evaluation.stats import compare_table

    groups = groups or [f"clip:{k}" for k in range(len(per_clip))]
    rows = []
    for other in OTHERS:
        if not all(other in c["scores"] for c in per_clip):
            continue
        for region in ("object", "around", "shadow"):
            pairs = [(c["scores"]["injection"][region], c["scores"][other][region], g)
                     for c, g in zip(per_clip, groups)]
            pairs = [p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])]
            if len(pairs) >= 2:
                rows.append({"name": f"injection vs {other} ({region})", "model": [p[0] for p in pairs],
                             "baseline": [p[1] for p in pairs], "groups": [p[2] for p in pairs],
                             "higher_is_better": True})
    return compare_table(rows, seed=seed) if rows else {"rows": []}


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
    obj = InsertedObject(str(data / "objects" / record["mesh"]),
                         Material(m["basecolor"], m["roughness"], m["metallic"]),
                         tuple(record["at"]), float(record["scale"]))
    return scene, read_clip_envmap(clip_dir, scene.meta), truth.rgb, mask, obj, record


def evaluate(data, clips, model, base, inverse, *, strength=None, received_from="support", ring: int = 6,
             seed: int = 0, domain: str = "real", log=None) -> dict:
    """Every method on every clip (module doc); ``inverse`` None = the clips' exact G-buffers (an oracle); ``log``:
    where the per-clip progress lines go (default: this module's logger, INFO; a skipped clip is also a WARNING)."""
    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.common import clip_group
    from neural_render.pipelines.insert import choose_depth_scale, insert_object, naive_composite

    log = log or logger.info
    per_clip, skipped, groups = [], [], []
    for clip_dir in clips:
        scene, env, truth, mask, obj, record = load_item(data, clip_dir)
        scale = float(scene.meta.depth_scale)
        if inverse is not None:
            gbuffer = inverse(scene.rgb, seed=seed, progress=False).gbuffer
            # estimated depth is relative: pin it to metres at the object's ground contact (as a user placing the
            # object on a surface would, and as `neural-render insert` does); the clip's true depth scale only when
            # that point is never in view
            scale = choose_depth_scale(None, None, gbuffer, scene.camera, obj, scene.meta)[0]
        else:
            gbuffer = scene.gbuffer.replace(depth=scene.gbuffer.depth / scale)
        options = {"depth_scale": scale, "seed": seed, "domain": domain}
        try:
            inj = insert_object(model, scene.rgb, scene.camera, env, obj, gbuffer, inject=True,
                                strength=strength, received_from=received_from, **options)
        except NeuralRenderError as e:  # e.g. hidden behind the estimated scene depth in every frame
            skipped.append({"clip": clip_dir.name, "reason": str(e)})
            logger.warning("%s: skipped (%s)", clip_dir.name, e)
            continue
        plain = insert_object(model, scene.rgb, scene.camera, env, obj, gbuffer, inject=False, **options)
        basic = insert_object(base, scene.rgb, scene.camera, env, obj, gbuffer, inject=False, **options)
        naive = naive_composite(scene.rgb, inj.gbuffer, scene.camera, env, inj.object_mask)
        outputs = [inj.rgb, plain.rgb, basic.rgb, inj.render, plain.render, basic.render, naive, scene.rgb]
        masks = regions(mask, truth, scene.rgb, ring)
        row = {"clip": clip_dir.name, "object": record.get("kind"), "group": clip_group(clip_dir),
               "pixels": {k: int(v.sum()) for k, v in masks.items()},
               "scores": {name: scores(out, truth, masks) for name, out in zip(METHODS, outputs)}}
        per_clip.append(row)
        groups.append(row["group"])
        s = row["scores"]
        log(f"{clip_dir.name} ({row['object']}): object PSNR inj {s['injection']['object']:.2f} / no-inj "
            f"{s['no injection (same model)']['object']:.2f} / classical {s['classical paste']['object']:.2f}; "
            f"around inj {s['injection']['around']:.2f} / unchanged input {s['input video (no object)']['around']:.2f}")
    if not per_clip:
        raise NeuralRenderError(f"no clip could be evaluated: {skipped}", data)

    def mean(method: str, region: str) -> float:
        values = [r["scores"][method][region] for r in per_clip if not math.isnan(r["scores"][method][region])]
        return sum(values) / len(values) if values else float("nan")

    return {"summary": {m: {r: mean(m, r) for r in REGIONS} for m in METHODS},
            "comparison": injection_comparisons(per_clip, groups, seed), "groups": sorted(set(groups)),
            "clips": per_clip, "skipped": skipped}


def format_report(result: dict) -> str:
    from neural_render.evaluation.common import comparison_lines

    lines = [f"insertion PSNR (dB, display sRGB) over {len(result['clips'])} clips ({len(result['skipped'])} "
             f"skipped) of {result['data']} (split: {result.get('split') or 'unknown'}), G-buffers: "
             f"{result['gbuffers']}, model {result['model']}",
             f"{'method':28s}" + "".join(f"{r:>10s}" for r in REGIONS)]
    for m in METHODS:
        lines.append(f"{m:28s}" + "".join(f"{result['summary'][m][r]:10.2f}" for r in REGIONS))
    lines += comparison_lines(result["comparison"], "injection against each method, paired per clip (+ = injection "
                              "better), hierarchical bootstrap, Holm over {m}:", 52, digits=2)
    return "\n".join(lines)
