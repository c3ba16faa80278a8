"""``neural-render eval sim2real --data HELDOUT --model DIR [--propagation DIR]``: sim-to-real proxy benchmark.

HELDOUT: ``neural-render synth --proxy`` clips never trained on (test env maps, unseen seeds): input = ``rendered/``
(classical split-sum shading of the exact G-buffers), target = the clip's Mitsuba path-traced rgb. Methods: the
IC-LoRA model (``--model``, a sim2real model folder or IC-LoRA folder + ``--base``), the anchor-propagation pipeline
(``--propagation``, a PropagationTask export; anchors from ``--enhancer``, default ``path-traced`` = ORACLE anchors:
the target itself at the anchor frames, so its PSNR on all frames is flattering; ``PSNR mid`` excludes those
frames for every method), the raw input, and the raw input pixel-filtered (Gaussian of the model's
``residual_filter_sigma``, else 0.5 px: the footprint integration a path tracer's pixel does and a point-sampled
render lacks; a model with a filtered residual base starts from exactly this, so the row shows what the network
adds). Everything is compared in display space (sRGB of clamp(x, 0, 1)).

Columns, averaged over clips: PSNR / SSIM vs the target; PSNR mid (frames that are not anchor frames); edge F1 of
the output vs the INPUT (Canny, 2-pixel tolerance: structure kept; metrics/edges.py); warp error (mean |frame t -
frame t+1 warped back with the GT forward flow|, object ids must match; metrics/temporal.py), with the path-traced
target's own warp error as the reference row; PSNR on the masks of objects that APPEAR MID-CLIP (synth spawning:
``spawn_frame`` > 0), pooled over every such pixel of every clip (the anchor pipeline's anchors may not show them).
Goals printed below the table: IC-LoRA >= input + 3 dB, edge F1 >= 0.9, warp error <= the target's. ``--json``
writes every per-clip number. Clips longer than the model window are processed in overlapping windows.
"""

from __future__ import annotations

import math

HELP = "evaluate sim-to-real translation on held-out proxy clips: PSNR/SSIM, edge F1, warp error, spawned objects"
METHODS = ("input", "filtered_input", "anchor_propagation", "ic_lora")
LABELS = {"input": "raw input (split-sum render)", "filtered_input": "raw input + pixel filter",
          "anchor_propagation": "anchor propagation",
          "ic_lora": "IC-LoRA", "target": "path-traced target (own)"}


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="held-out `synth --proxy` dataset folder (or one clip)")
    parser.add_argument("--model", required=True, help="sim2real model folder or IC-LoRA folder")
    parser.add_argument("--base", default=None, help="base pipeline folder for a bare IC-LoRA folder")
    parser.add_argument("--propagation", default=None, help="anchor propagation model folder (optional)")
    parser.add_argument("--enhancer", default="path-traced", help="anchor enhancer for the propagation pipeline")
    parser.add_argument("--strength", type=float, default=1.0, help="IC-LoRA strength (default 1)")
    parser.add_argument("--window", type=int, default=None, help="IC-LoRA latent frames per window")
    parser.add_argument("--overlap", type=int, default=None, help="IC-LoRA window overlap (latent frames)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")


def spawned_object_ids(meta) -> list[int]:
    """Ids of objects that appear after frame 0 (synth ``spawn_frame`` > 0) from a synth clip's meta."""
    objects = ((meta.extra or {}).get("synth") or {}).get("objects") or []
    return [int(o["id"]) for o in objects if o and (o.get("motion") or {}).get("spawn_frame", 0) > 0]


def _aux(clip_dir, num_frames: int):
    import numpy as np
    import torch

    from neural_render.synth.dataset import read_flow, read_object_ids

    flows, valids, ids = [], [], []
    for t in range(num_frames):
        flow, valid = read_flow(clip_dir, t)
        flows.append(flow)
        valids.append(valid)
        ids.append(read_object_ids(clip_dir, t))
    return (torch.from_numpy(np.stack(flows))[None], torch.from_numpy(np.stack(valids))[None],
            torch.from_numpy(np.stack(ids))[None])


def clip_scores(pred, target, source, flow, valid, ids, spawn_mask, mid_frames) -> dict:
    """Scores of one method's display video (1, T, 3, H, W) in [0, 1] (module doc); sums for the pooled spawn PSNR."""
    from neural_render.metrics import psnr, ssim, temporal_warp_error
    from neural_render.metrics.edges import edge_f1

    out = {"psnr": float(psnr(pred, target)[0]), "ssim": float(ssim(pred, target)[0]),
           "psnr_mid": float(psnr(pred[:, mid_frames], target[:, mid_frames])[0]) if mid_frames else math.nan,
           "edge_f1_vs_input": float(edge_f1(pred, source)[0])}
    errors = temporal_warp_error(pred, flow, valid, ids)
    out["warp_error"] = float(errors[~errors.isnan()].mean()) if bool((~errors.isnan()).any()) else math.nan
    count = int(spawn_mask.sum()) * 3
    se = float((((pred - target) ** 2) * spawn_mask).sum()) if count else 0.0
    out["spawn_se"], out["spawn_count"] = se, count
    out["psnr_spawned"] = 10 * math.log10(1.0 / (se / count)) if count and se > 0 else math.nan
    return out


def _mean(values) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def summarize(per_clip: list[dict]) -> dict:
    """Mean of every score over clips per method; spawned-object PSNR pooled over all spawned pixels."""
    summary = {}
    for method in (*METHODS, "target"):
        rows = [c[method] for c in per_clip if method in c]
        if not rows:
            continue
        s = {k: _mean([r.get(k, math.nan) for r in rows]) for k in ("psnr", "ssim", "psnr_mid", "edge_f1_vs_input",
                                                                      "warp_error")}
        se, count = sum(r.get("spawn_se", 0.0) for r in rows), sum(r.get("spawn_count", 0) for r in rows)
        s["psnr_spawned_pooled"] = 10 * math.log10(count / se) if count and se > 0 else math.nan
        s["spawned_pixels"] = count // 3
        s["clips"] = len(rows)
        summary[method] = s
    return summary


def format_table(summary: dict) -> str:
    def f(v, fmt="{:7.2f}"):
        return "      -" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    header = (f"{'method':32s} {'PSNR':>7s} {'SSIM':>7s} {'PSNR mid':>8s} {'edgeF1/in':>9s} {'warp err':>8s} "
              f"{'PSNR spawned':>12s}")
    lines = [header]
    for method in (*METHODS, "target"):
        s = summary.get(method)
        if s is None:
            continue
        if method == "target":
            lines.append(f"{LABELS[method]:32s} {'-':>7s} {'-':>7s} {'-':>8s} {f(s['edge_f1_vs_input'], '{:9.3f}')} "
                         f"{f(s['warp_error'], '{:8.4f}')} {'-':>12s}")
            continue
        lines.append(f"{LABELS[method]:32s} {f(s['psnr'])} {f(s['ssim'], '{:7.4f}')} {f(s['psnr_mid'], '{:8.2f}')} "
                     f"{f(s['edge_f1_vs_input'], '{:9.3f}')} {f(s['warp_error'], '{:8.4f}')} "
                     f"{f(s['psnr_spawned_pooled'], '{:12.2f}')}")
    if "ic_lora" in summary and "input" in summary:
        ic, base = summary["ic_lora"], summary["input"]
        gain = ic["psnr"] - base["psnr"]
        lines.append(f"goal PSNR  IC-LoRA - input = {gain:+.2f} dB (goal >= +3.00): {'MET' if gain >= 3 else 'NOT MET'}")
        if "filtered_input" in summary:
            lines.append(f"           of which the pixel filter alone: "
                         f"{summary['filtered_input']['psnr'] - base['psnr']:+.2f} dB")
        lines.append(f"goal edge  IC-LoRA edge F1 vs input = {ic['edge_f1_vs_input']:.3f} (goal >= 0.9): "
                     f"{'MET' if ic['edge_f1_vs_input'] >= 0.9 else 'NOT MET'}")
        if "target" in summary:
            own = summary["target"]["warp_error"]
            lines.append(f"goal warp  IC-LoRA {ic['warp_error']:.4f} vs target's own {own:.4f} (goal <=): "
                         f"{'MET' if ic['warp_error'] <= own else 'NOT MET'}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN / inf -> None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(args) -> int:
    import json
    import time

    import torch

    from neural_render.cli.sim2real import load_sim2real
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_path
    from neural_render.pipelines.sim2real_anchors import make_enhancer, read_source
    from neural_render.pipelines.sim2real_data import AnchorPropagationPipeline, anchor_frames
    from neural_render.render.pixel_filter import PIXEL_FILTER_SIGMA, pixel_filter
    from neural_render.render.tonemap import linear_to_srgb

    if args.max_clips is not None and args.max_clips < 1:
        raise NeuralRenderError(f"--max-clips must be >= 1, got {args.max_clips}")
    start = time.perf_counter()
    model = load_sim2real(args.model, args.base)
    propagation = AnchorPropagationPipeline.from_pretrained(args.propagation) if args.propagation else None
    enhancer = make_enhancer(args.enhancer, seed=args.seed) if propagation is not None else None
    clips = find_clips(args.data)[: args.max_clips]
    if not clips:
        raise NeuralRenderError("no clip folders found", args.data)

    def disp(x):
        return linear_to_srgb(x.float().clamp(0.0, 1.0))

    filter_sigma = getattr(model, "residual_filter_sigma", 0.0) or PIXEL_FILTER_SIGMA
    per_clip = []
    for k, clip_dir in enumerate(clips):
        source = read_source(clip_dir)
        if source.real is None:
            raise NeuralRenderError("not a `synth --proxy` clip (needs rendered/ and the path-traced rgb)", clip_dir)
        t = source.num_frames
        flow, valid, ids = _aux(clip_dir, t)
        spawned = spawned_object_ids(source.meta)
        spawn_mask = torch.isin(ids, torch.tensor(spawned or [-1])).float()
        frames = anchor_frames(t, propagation.segment) if propagation is not None and t >= 2 else []
        mid = [i for i in range(t) if i not in frames]
        target, inp = disp(source.real), disp(source.rendered)
        outputs = {"input": inp, "filtered_input": disp(pixel_filter(source.rendered, filter_sigma))}
        if propagation is not None:
            anchors = enhancer.enhance(source, frames)[None]
            depth = source.gbuffer.depth if propagation.conditioning == "depth" else None
            outputs["anchor_propagation"] = disp(propagation(source.rendered, anchors, frames, depth, seed=args.seed + k))
        outputs["ic_lora"] = disp(model(source.rendered, strength=args.strength, window=args.window,
                                        overlap=args.overlap, seed=args.seed + k).frames)
        row = {"clip": str(clip_dir), "frames": t, "spawned_ids": spawned, "anchor_frames": frames}
        for name, video in outputs.items():
            row[name] = clip_scores(video, target, inp, flow, valid, ids, spawn_mask, mid)
        row["target"] = clip_scores(target, target, inp, flow, valid, ids, spawn_mask, mid)
        per_clip.append(row)
    summary = summarize(per_clip)
    print(f"sim2real eval: {len(clips)} clip(s) of {args.data}; model {args.model} "
          f"(trained steps {model.info.get('global_step', 0)}); propagation "
          f"{args.propagation or '-'} (enhancer {enhancer.name if enhancer else '-'}); "
          f"{time.perf_counter() - start:.1f} s")
    print(format_table(summary))
    if args.json:
        record = {"data": args.data, "model": args.model, "propagation": args.propagation,
                  "enhancer": enhancer.name if enhancer else None, "summary": summary, "clips": per_clip}
        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump(_json_safe(record), fh, indent=1, allow_nan=False)
    return 0
