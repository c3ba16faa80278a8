"""Sim-to-real proxy benchmark (``neural-render eval sim2real``).

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
Comparisons (Holm-corrected hierarchical bootstrap over env maps then clips, :mod:`.stats`): IC-LoRA against the raw
and the pixel-filtered input (PSNR and SSIM), and the anchor propagation against them when it was run.
"""

from __future__ import annotations

import math

METHODS = ("input", "filtered_input", "anchor_propagation", "ic_lora")
LABELS = {"input": "raw input (split-sum render)", "filtered_input": "raw input + pixel filter",
          "anchor_propagation": "anchor propagation",
          "ic_lora": "IC-LoRA", "target": "path-traced target (own)"}


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
        verdict = "MET" if gain >= 3 else "NOT MET"
        lines.append(f"goal PSNR  IC-LoRA - input = {gain:+.2f} dB (goal >= +3.00): {verdict}")
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


def comparisons(per_clip: list[dict], groups: list[str], seed: int = 0) -> dict:
    """IC-LoRA (and anchor propagation, when scored) against the raw and the pixel-filtered input, PSNR and SSIM."""
    from neural_render.evaluation.stats import compare_table

    rows = []
    for method in ("ic_lora", "anchor_propagation"):
        if not all(method in c for c in per_clip):
            continue
        for baseline in ("input", "filtered_input"):
            for metric in ("psnr", "ssim"):
                pairs = [(c[method][metric], c[baseline][metric], g) for c, g in zip(per_clip, groups)]
                pairs = [p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])]
                if len(pairs) >= 2:
                    rows.append({"name": f"{LABELS[method]} vs {LABELS[baseline]} ({metric.upper()})",
                                 "model": [p[0] for p in pairs], "baseline": [p[1] for p in pairs],
                                 "groups": [p[2] for p in pairs], "higher_is_better": True})
    return compare_table(rows, seed=seed) if rows else {"rows": []}


def evaluate(model, clips, *, propagation=None, enhancer=None, strength: float = 1.0, window=None, overlap=None,
             seed: int = 0) -> dict:
    """Every method on every ``synth --proxy`` clip (module doc): summary, per-clip scores, the comparison table."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.common import clip_group
    from neural_render.pipelines.sim2real_anchors import read_source
    from neural_render.pipelines.sim2real_data import anchor_frames
    from neural_render.render.pixel_filter import PIXEL_FILTER_SIGMA, pixel_filter
    from neural_render.render.tonemap import linear_to_srgb

    def disp(x):
        return linear_to_srgb(x.float().clamp(0.0, 1.0))

    filter_sigma = getattr(model, "residual_filter_sigma", 0.0) or PIXEL_FILTER_SIGMA
    per_clip, groups = [], []
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
            outputs["anchor_propagation"] = disp(propagation(source.rendered, anchors, frames, depth, seed=seed + k))
        outputs["ic_lora"] = disp(model(source.rendered, strength=strength, window=window, overlap=overlap,
                                        seed=seed + k).frames)
        row = {"clip": str(clip_dir), "frames": t, "spawned_ids": spawned, "anchor_frames": frames}
        for name, video in outputs.items():
            row[name] = clip_scores(video, target, inp, flow, valid, ids, spawn_mask, mid)
        row["target"] = clip_scores(target, target, inp, flow, valid, ids, spawn_mask, mid)
        per_clip.append(row)
        groups.append(clip_group(clip_dir))
    return {"summary": summarize(per_clip), "comparison": comparisons(per_clip, groups, seed),
            "groups": sorted(set(groups)), "clips": per_clip}
