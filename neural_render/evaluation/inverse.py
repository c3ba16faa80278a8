"""Inverse-rendering evaluation: G-buffer accuracy beside the strongest honest baselines, with trustworthy statistics.

Every clip of the dataset (clip folders with ground-truth G-buffers, e.g. ``neural-render synth --split val``) is
run through the inverse pipeline (all passes; windows / overlap; the model's default steps) and scored on the
ground-truth foreground pixels with :mod:`neural_render.metrics.inverse`. Baselines, each in the same table:

* normal: constant camera-facing (0, 0, 1);
* albedo: the input RGB (clamped to [0, 1]) AND the pixel-filtered input (Gaussian of
  :data:`~neural_render.render.pixel_filter.PIXEL_FILTER_SIGMA` px, which removes Monte-Carlo grain: the stronger
  one, and what the model's own skip connection starts from);
* roughness / metallic: the TRAINING-set means (``train_stats.json`` in the model folder or ``train_data``);
* depth: a constant (its scale-and-shift fit is the mean depth).

The passes are scored as predicted (``zero_background=False``), exactly as the baselines are; the predicted mask is
scored on its own (IoU). Statistics (:mod:`neural_render.evaluation.stats`): per-clip paired differences,
hierarchical bootstrap over env maps then clips (:func:`~neural_render.evaluation.common.clip_group`), Holm across
every comparison of the table; "clearly" = the corrected interval excludes zero.

Temporal consistency (clips with the synth engine's flow files): warp error of each pass between frames t and t+1
with the ground-truth forward flow (metrics/temporal.py), the ground truth's own as the floor. Long clips
(``long_clips``): pairs crossing a window boundary vs within windows, for blended and for independent windows.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

TRAIN_STATS = "train_stats.json"
PASSES_ORDER = ("basecolor", "normal", "depth", "roughness", "metallic")

#: comparison rows: (name, per-clip key, higher is better, baseline key, baseline label)
COMPARISONS = (
    ("normal mean angle (deg) vs constant (0,0,1)", "normal_mean_deg", False, "constant", "constant (0,0,1)"),
    ("albedo si-PSNR (dB) vs input RGB", "albedo_si_psnr", True, "constant", "input RGB"),
    ("albedo si-PSNR (dB) vs pixel-filtered input", "albedo_si_psnr", True, "filtered", "pixel-filtered input"),
    ("roughness RMSE vs train mean", "roughness_rmse", False, "constant", "train mean"),
    ("metallic RMSE vs train mean", "metallic_rmse", False, "constant", "train mean"),
    ("depth SSI AbsRel vs constant", "depth_absrel", False, "constant", "constant depth"),
)


def compute_train_stats(train_dir: str | os.PathLike | list) -> dict:
    """Mean roughness and metallic over the foreground pixels of every frame of every clip under ``train_dir`` (one
    folder or a list of folders, as the training data module takes them)."""
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError
    from neural_render.io.clip import read_clip

    dirs = [train_dir] if isinstance(train_dir, (str, os.PathLike)) else list(train_dir)
    clips = [clip for d in dirs for clip in find_clips(d)]
    if not clips:
        raise NeuralRenderError("no clip folders found", train_dir)
    sums, count = {"roughness": 0.0, "metallic": 0.0}, 0
    for clip_dir in clips:
        g = read_clip(clip_dir, passes=["roughness", "metallic", "mask"], rgb=False).gbuffer
        valid = g.mask > 0.5
        count += int(valid.sum())
        for name in sums:
            sums[name] += float(getattr(g, name)[valid].double().sum())
    if count == 0:
        raise NeuralRenderError("training clips have no foreground pixel", train_dir)
    return {"roughness_mean": sums["roughness"] / count, "metallic_mean": sums["metallic"] / count,
            "pixels": count, "clips": len(clips), "source": ", ".join(str(d) for d in dirs)}


def read_train_stats(model: Path, train_data=None) -> dict | None:
    """Training means: computed from ``train_data`` when given, else the model folder's ``train_stats.json``."""
    from neural_render.errors import NeuralRenderError

    if train_data:
        return compute_train_stats(train_data)
    path = Path(model) / TRAIN_STATS
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text())
        float(stats["roughness_mean"]), float(stats["metallic_mean"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NeuralRenderError(f"bad {TRAIN_STATS}: {err}", path) from None
    return stats


def load_clip(clip_dir: Path):
    """(rgb (1,T,3,H,W), gt GBuffer, aux (flow, valid, ids) or None) of a clip folder with ground truth."""
    import numpy as np
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io.clip import read_clip, read_meta
    from neural_render.synth.dataset import FLOW_FILE, read_flow, read_object_ids

    meta = read_meta(clip_dir)
    missing = [p for p in (*PASSES_ORDER, "mask") if p not in meta.passes]
    if missing or meta.rgb_source is None:
        raise NeuralRenderError(f"clip lacks ground truth {missing or ['rgb']} needed for evaluation", clip_dir)
    clip = read_clip(clip_dir, passes=[*PASSES_ORDER, "mask"])
    aux = None
    if meta.num_frames >= 2 and all((clip_dir / FLOW_FILE.format(t)).is_file() for t in range(meta.num_frames)):
        flows = [read_flow(clip_dir, t) for t in range(meta.num_frames)]
        flow = torch.from_numpy(np.stack([f for f, _ in flows]))[None]
        valid = torch.from_numpy(np.stack([v for _, v in flows]))[None]
        ids = torch.from_numpy(np.stack([read_object_ids(clip_dir, t) for t in range(meta.num_frames)]))[None]
        aux = (flow, valid, ids)
    return clip.rgb, clip.gbuffer, aux


def _per_clip_value(record: dict, key: str) -> float:
    if key == "normal_mean_deg":
        angles = record.get("normal_angles")
        return float(angles.double().mean()) if angles is not None and angles.numel() else math.nan
    values = record.get(key)
    return float(values[0]) if values else math.nan


def comparison_rows(model_rec: list[dict], base_rec: dict[str, list[dict]], groups: list[str]) -> list[dict]:
    """Rows for :func:`~neural_render.evaluation.stats.compare_table`; clips where either side is not finite (e.g.
    the infinite si-PSNR of a perfect clip) are left out of that row, and the row's ``clips`` says how many remain."""
    rows = []
    for name, key, higher, base_key, _ in COMPARISONS:
        m = [_per_clip_value(r, key) for r in model_rec]
        b = [_per_clip_value(r, key) for r in base_rec[base_key]]
        keep = [i for i in range(len(m)) if math.isfinite(m[i]) and math.isfinite(b[i])]
        if len(keep) >= 2:
            rows.append({"name": name, "model": [m[i] for i in keep], "baseline": [b[i] for i in keep],
                         "groups": [groups[i] for i in keep], "higher_is_better": higher})
    return rows


def evaluate_accuracy(pipe, clips: list[Path], stats: dict | None, window: int, overlap: int, steps=None,
                      seed: int = 0, n_boot: int = 10000) -> dict:
    """Model vs baselines accuracy (summaries, the corrected comparison table) and per-pass temporal warp errors."""
    import torch

    from neural_render.evaluation.common import clip_group
    from neural_render.evaluation.stats import compare_table
    from neural_render.metrics.inverse import (
        aggregate_accuracy,
        baseline_gbuffer,
        clip_accuracy,
        nanmean,
        temporal_errors,
    )
    from neural_render.render.pixel_filter import pixel_filter

    rough = stats["roughness_mean"] if stats else None
    metal = stats["metallic_mean"] if stats else None
    model_rec, base_rec, groups, per_clip = [], {"constant": [], "filtered": []}, [], []
    temporal, temporal_gt = {}, {}
    for clip_dir in clips:
        rgb, gt, aux = load_clip(clip_dir)
        pred = pipe(rgb, num_steps=steps, window=window, overlap=overlap, seed=seed, progress=False,
                    zero_background=False).gbuffer
        rec = clip_accuracy(pred, gt)
        model_rec.append(rec)
        base_rec["constant"].append(clip_accuracy(baseline_gbuffer(rgb, gt, rough, metal), gt))
        base_rec["filtered"].append(clip_accuracy(baseline_gbuffer(pixel_filter(rgb), gt, rough, metal), gt))
        groups.append(clip_group(clip_dir))
        per_clip.append({"clip": clip_dir.name, "group": groups[-1],
                         **{k: v[0] for k, v in rec.items() if k != "normal_angles"},
                         "normal_mean_deg": _per_clip_value(rec, "normal_mean_deg")})
        if aux is not None:
            mask = gt.mask > 0.5
            for name, err in temporal_errors(pred, *aux, mask).items():
                temporal.setdefault(name, []).append(err)
            for name, err in temporal_errors(gt, *aux, mask).items():
                temporal_gt.setdefault(name, []).append(err)

    def merge(d):
        return {k: nanmean(torch.cat([e.reshape(-1) for e in v])) for k, v in d.items()}

    rows = comparison_rows(model_rec, base_rec, groups)
    table = compare_table(rows, n_boot=n_boot, seed=seed) if rows else {"rows": []}
    return {"model": aggregate_accuracy(model_rec), "baseline": aggregate_accuracy(base_rec["constant"]),
            "baseline_filtered": aggregate_accuracy(base_rec["filtered"]), "comparison": table,
            "groups": sorted(set(groups)), "temporal": {"model": merge(temporal), "ground_truth": merge(temporal_gt)},
            "per_clip": per_clip}


def evaluate_windows(pipe, clips: list[Path], window: int, overlap: int, steps=None, seed: int = 0) -> dict:
    """Boundary vs within-window warp errors on long clips: blended windows, independent windows, ground truth."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.metrics.inverse import temporal_errors
    from neural_render.metrics.temporal import boundary_pairs, split_boundary_within

    runs = {"blended": overlap, "independent": 0}
    collected: dict[str, dict[str, list]] = {k: {} for k in (*runs, "ground_truth")}
    used, spans_of = [], {}
    for clip_dir in clips:
        rgb, gt, aux = load_clip(clip_dir)
        if aux is None or rgb.shape[1] <= window:
            continue
        used.append(clip_dir.name)
        mask = gt.mask > 0.5
        for run, run_overlap in runs.items():
            out = pipe(rgb, num_steps=steps, window=window, overlap=run_overlap, seed=seed, progress=False,
                       zero_background=False)
            spans_of[run] = out.windows
            boundary = boundary_pairs(rgb.shape[1], out.windows)
            for name, err in temporal_errors(out.gbuffer, *aux, mask).items():
                collected[run].setdefault(name, []).append((err, boundary))
        boundary = boundary_pairs(rgb.shape[1], spans_of["blended"])   # GT floor on the blended run's boundaries
        for name, err in temporal_errors(gt, *aux, mask).items():
            collected["ground_truth"].setdefault(name, []).append((err, boundary))
    if not used:
        raise NeuralRenderError(f"no clip with flow files and more than --window {window} frames",
                                clips[0].parent if clips else None)
    result = {"clips": used, "window": window, "overlap": overlap, "windows_blended": spans_of["blended"]}
    for run, per_pass in collected.items():
        result[run] = {}
        for name, items in per_pass.items():
            errs = torch.cat([e for e, _ in items])
            flags = torch.cat([b.reshape(1, -1).expand(e.shape[0], -1) for e, b in items])
            result[run][name] = split_boundary_within(errs.reshape(1, -1), flags.reshape(-1))
    return result


SUMMARY_ROWS = (  # (key, label, baseline key(s))
    ("normal_mean_deg", "normal mean angle (deg)", "constant (0,0,1)"),
    ("normal_median_deg", "normal median angle (deg)", "constant (0,0,1)"),
    ("normal_pct_11.25", "normal % < 11.25 deg", "constant (0,0,1)"),
    ("albedo_si_psnr_db", "albedo si-PSNR (dB)", "input RGB | pixel-filtered input"),
    ("roughness_rmse", "roughness RMSE", "train mean"),
    ("metallic_rmse", "metallic RMSE", "train mean"),
    ("depth_absrel", "depth SSI AbsRel", "constant"),
    ("mask_iou", "foreground mask IoU", "-"),
)


def format_report(result: dict) -> str:
    """The text table of :func:`evaluate` (summaries, then the Holm-corrected comparisons, temporal, windows)."""
    from neural_render.evaluation.common import comparison_lines, fmt

    acc = result["accuracy"]
    lines = [(f"inverse evaluation: {result['num_clips']} clip(s) in {len(acc['groups'])} env-map group(s) of "
              f"{result['data']} (split: {result.get('split') or 'unknown'})  model {result['model']}  "
              f"(trained steps: {result['model_info'].get('global_step', 'unknown')})")]
    if not result["model_trained"]:
        lines.append("WARNING: this model was never trained (global_step 0): its numbers are those of random weights")
    lines.append(f"{'metric':28s} {'model':>9s} {'baseline':>9s} {'filtered':>9s}  baseline")
    for key, label, what in SUMMARY_ROWS:
        m, b = acc["model"].get(key), acc["baseline"].get(key)
        f = acc["baseline_filtered"].get(key) if key == "albedo_si_psnr_db" else None
        if m is None and b is None:
            continue
        lines.append(f"{label:28s} {fmt(m):>9s} {fmt(b):>9s} {fmt(f) if f is not None else '':>9s}  {what}")
    lines += comparison_lines(acc["comparison"], "model - baseline per clip (oriented: + = model better), {m} "
                              "comparisons, hierarchical bootstrap (env map, then clip), Holm-corrected at alpha "
                              "{alpha}:", 46, extra=lambda row: f"  ({row['n_clips']} clips, {row['groups']} groups)")
    if result.get("train_stats"):
        s = result["train_stats"]
        lines.append(f"(train means: roughness {s['roughness_mean']:.4f}, metallic {s['metallic_mean']:.4f})")
    tm = acc["temporal"]
    if tm["model"]:
        lines.append("temporal warp error with GT flow (normal: deg, others: mean abs), model vs ground-truth floor:")
        for name in PASSES_ORDER:
            if name in tm["model"]:
                lines.append(f"  {name:10s} model {fmt(tm['model'][name], 4):>8s}   ground truth "
                             f"{fmt(tm['ground_truth'].get(name), 4):>8s}")
    win = result.get("windows")
    if win:
        lines.append(f"window test: {len(win['clips'])} clip(s), window {win['window']}, overlap {win['overlap']}: "
                     "warp error on pairs crossing a window boundary vs within windows")
        lines.append(f"  {'pass':10s} {'run':12s} {'boundary':>9s} {'within':>9s} {'ratio':>7s}")
        for name in PASSES_ORDER:
            for run in ("blended", "independent", "ground_truth"):
                s = win.get(run, {}).get(name)
                if s:
                    lines.append(f"  {name:10s} {run:12s} {fmt(s['boundary'], 4):>9s} {fmt(s['within'], 4):>9s} "
                                 f"{fmt(s['ratio'], 2):>7s}")
    return "\n".join(lines)


def evaluate(model: Path, data, *, window: int, overlap: int, steps=None, seed: int = 0, max_clips=None,
             long_data=None, train_data=None, n_boot: int = 10000) -> dict:
    """The whole inverse evaluation of the pipeline folder ``model`` on ``data`` (module doc) -> JSON-ready dict."""
    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.common import dataset_split, find_eval_clips
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    if window < 2 or not 0 <= overlap < window:
        raise NeuralRenderError(f"need --window >= 2 and 0 <= --overlap < --window, got {window}, {overlap}")
    if steps is not None and steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {steps}")
    clips = find_eval_clips(data, max_clips)
    long_clips = find_eval_clips(long_data) if long_data else []
    pipe = InverseRenderingPipeline.from_pretrained(model)
    stats = read_train_stats(model, train_data)
    result = {"data": str(data), "split": dataset_split(data), "model": str(model), "num_clips": len(clips),
              "model_info": dict(pipe.info), "model_trained": bool(pipe.is_trained),
              "settings": {"window": window, "overlap": overlap, "steps": steps or pipe.default_steps(), "seed": seed,
                           "mode": pipe.mode, "passes": list(pipe.passes)},
              "train_stats": stats}
    result["accuracy"] = evaluate_accuracy(pipe, clips, stats, window, overlap, steps, seed, n_boot)
    if long_clips:
        result["long_data"] = str(long_data)
        result["windows"] = evaluate_windows(pipe, long_clips, window, overlap, steps, seed)
    return result
