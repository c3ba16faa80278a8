"""``neural-render eval inverse --data HELDOUT --model DIR``: G-buffer accuracy and temporal consistency.

Every clip of ``--data`` (clip folders with ground-truth G-buffers, e.g. ``neural-render synth --envmaps test``) is run
through the inverse pipeline (all passes; windows ``--window`` / ``--overlap``; default steps of the model) and scored
on the ground-truth foreground pixels with :mod:`neural_render.metrics.inverse`, beside the trivial baselines in the
same table: constant camera-facing normal (0, 0, 1); input RGB (clamped to [0, 1]) as albedo; the TRAINING-set mean
roughness / metallic (read from ``train_stats.json`` in the model folder, or computed from ``--train-data``);
a constant depth. The passes are scored as predicted (``zero_background=False``): a ground-truth foreground pixel
that the model's own mask calls background keeps its predicted value instead of 0, exactly as the baselines are
scored; the predicted mask is scored on its own (foreground mask IoU).

Temporal consistency (clips with the synth engine's flow files): warp error of each predicted pass between frames
t and t+1 with the ground-truth forward flow, on pixels where the flow is valid, the ground-truth mask is set and the
object ids agree (metrics/temporal.py); the ground truth's own warp error is printed as the floor (camera-space
normals and depth legitimately change between frames). ``--long-data``: clips longer than a window (e.g. 64 frames,
``--window 16``) are additionally split into frame pairs crossing a window boundary vs pairs within windows, for the
blended windows and, as a reference that shows what a seam looks like, for independent windows (overlap 0).

Output: a text table on stdout; ``--json`` writes every number (atomically; non-finite values as null).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW

HELP = "evaluate an inverse rendering model on held-out synthetic clips beside trivial baselines (table + JSON)"
TRAIN_STATS = "train_stats.json"
PASSES_ORDER = ("basecolor", "normal", "depth", "roughness", "metallic")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="held-out dataset folder (clip folders with G-buffers)")
    parser.add_argument("--model", default=None, help="inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--long-data", default=None, help="folder of long clips for the window-boundary test")
    parser.add_argument("--train-data", default=None,
                        help=f"training dataset to compute the baseline means from (default: {TRAIN_STATS} "
                             "in the model folder)")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    parser.add_argument("--window", type=int, default=INVERSE_WINDOW,
                        help=f"frames per window (default {INVERSE_WINDOW})")
    parser.add_argument("--overlap", type=int, default=INVERSE_OVERLAP,
                        help=f"frames shared by neighbouring windows (default {INVERSE_OVERLAP})")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips of --data only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


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


def _train_stats(args, model: Path) -> dict | None:
    from neural_render.errors import NeuralRenderError

    if args.train_data:
        return compute_train_stats(args.train_data)
    path = model / TRAIN_STATS
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text())
        float(stats["roughness_mean"]), float(stats["metallic_mean"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NeuralRenderError(f"bad {TRAIN_STATS}: {err}", path) from None
    return stats


def _load_clip(clip_dir: Path):
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


def _clips(folder: str, limit: int | None) -> list[Path]:
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError

    clips = find_clips(folder)
    if not clips:
        raise NeuralRenderError("no clip folders (with meta.json) found", folder)
    return clips[:limit] if limit else clips


def evaluate_accuracy(pipe, clips, args, stats: dict | None) -> dict:
    """Model vs baselines accuracy, and per-pass temporal warp errors (model and ground truth)."""
    from neural_render.metrics.inverse import (
        aggregate_accuracy,
        baseline_gbuffer,
        clip_accuracy,
        nanmean,
        temporal_errors,
    )

    model_rec, base_rec, temporal, temporal_gt, per_clip = [], [], {}, {}, []
    rough = stats["roughness_mean"] if stats else None
    metal = stats["metallic_mean"] if stats else None
    for clip_dir in clips:
        rgb, gt, aux = _load_clip(clip_dir)
        pred = pipe(rgb, num_steps=args.steps, window=args.window, overlap=args.overlap, seed=args.seed,
                    progress=False, zero_background=False).gbuffer
        rec = clip_accuracy(pred, gt)
        model_rec.append(rec)
        base_rec.append(clip_accuracy(baseline_gbuffer(rgb, gt, rough, metal), gt))
        entry = {"clip": clip_dir.name, **{k: v[0] for k, v in rec.items() if k != "normal_angles"},
                 "normal_mean_deg": float(rec["normal_angles"].double().mean()) if rec["normal_angles"].numel() else None}
        if aux is not None:
            mask = gt.mask > 0.5
            for name, err in temporal_errors(pred, *aux, mask).items():
                temporal.setdefault(name, []).append(err)
            for name, err in temporal_errors(gt, *aux, mask).items():
                temporal_gt.setdefault(name, []).append(err)
        per_clip.append(entry)
    import torch

    def merge(d):
        return {k: nanmean(torch.cat([e.reshape(-1) for e in v])) for k, v in d.items()}

    return {"model": aggregate_accuracy(model_rec), "baseline": aggregate_accuracy(base_rec),
            "comparison": compare_per_clip(model_rec, base_rec),
            "temporal": {"model": merge(temporal), "ground_truth": merge(temporal_gt)}, "per_clip": per_clip}


#: metrics with a per-clip paired comparison: (summary key, per-clip record key, higher is better)
PAIRED = (("normal_mean_deg", "normal_angles", False), ("albedo_si_psnr_db", "albedo_si_psnr", True),
          ("roughness_rmse", "roughness_rmse", False), ("metallic_rmse", "metallic_rmse", False),
          ("depth_absrel", "depth_absrel", False))


def compare_per_clip(model_rec: list[dict], base_rec: list[dict]) -> dict:
    """{summary key: :func:`~neural_render.metrics.inverse.paired_comparison`} of the model vs the baseline over the
    clips (one record per clip; the normal's per-clip value is the clip's mean angle)."""
    from neural_render.metrics.inverse import paired_comparison

    def per_clip(records, key):
        if key == "normal_angles":
            return [float(r[key].double().mean()) if r[key].numel() else math.nan for r in records]
        return [r[key][0] for r in records]

    return {name: paired_comparison(per_clip(model_rec, key), per_clip(base_rec, key), higher)
            for name, key, higher in PAIRED
            if all(key in r for r in model_rec) and all(key in r for r in base_rec) and model_rec}


def evaluate_windows(pipe, clips, args) -> dict:
    """Boundary vs within-window warp errors on long clips: blended windows, independent windows, ground truth."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.metrics.inverse import temporal_errors
    from neural_render.metrics.temporal import boundary_pairs, split_boundary_within

    runs = {"blended": args.overlap, "independent": 0}
    collected: dict[str, dict[str, list]] = {k: {} for k in (*runs, "ground_truth")}
    used = []
    for clip_dir in clips:
        rgb, gt, aux = _load_clip(clip_dir)
        if aux is None or rgb.shape[1] <= args.window:
            continue
        used.append(clip_dir.name)
        mask = gt.mask > 0.5
        spans_of = {}
        for run, overlap in runs.items():
            out = pipe(rgb, num_steps=args.steps, window=args.window, overlap=overlap, seed=args.seed, progress=False,
                       zero_background=False)
            spans_of[run] = out.windows
            boundary = boundary_pairs(rgb.shape[1], out.windows)
            for name, err in temporal_errors(out.gbuffer, *aux, mask).items():
                collected[run].setdefault(name, []).append((err, boundary))
        boundary = boundary_pairs(rgb.shape[1], spans_of["blended"])   # GT floor on the blended run's boundaries
        for name, err in temporal_errors(gt, *aux, mask).items():
            collected["ground_truth"].setdefault(name, []).append((err, boundary))
    if not used:
        raise NeuralRenderError(f"no clip with flow files and more than --window {args.window} frames", args.long_data)
    result = {"clips": used, "window": args.window, "overlap": args.overlap, "windows_blended": spans_of["blended"]}
    for run, per_pass in collected.items():
        result[run] = {}
        for name, items in per_pass.items():
            errs = torch.cat([e for e, _ in items])
            flags = torch.cat([b.reshape(1, -1).expand(e.shape[0], -1) for e, b in items])
            stats = split_boundary_within(errs.reshape(1, -1), flags.reshape(-1))
            result[run][name] = stats
    return result


# ---------------------------------------------------------------------------------------------------- output
def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


CLEARLY = {"better": "yes", "worse": "NO", "tie": "tie", "n/a": "n/a"}
ROWS = (  # (key, label, higher is better, baseline description)
    ("normal_mean_deg", "normal mean angle (deg)", False, "constant (0,0,1)"),
    ("normal_median_deg", "normal median angle (deg)", False, "constant (0,0,1)"),
    ("normal_pct_11.25", "normal % < 11.25 deg", True, "constant (0,0,1)"),
    ("normal_pct_22.5", "normal % < 22.5 deg", True, "constant (0,0,1)"),
    ("normal_pct_30", "normal % < 30 deg", True, "constant (0,0,1)"),
    ("albedo_si_psnr_db", "albedo si-PSNR (dB)", True, "input RGB"),
    ("roughness_rmse", "roughness RMSE", False, "train mean"),
    ("metallic_rmse", "metallic RMSE", False, "train mean"),
    ("depth_absrel", "depth SSI AbsRel", False, "constant"),
    ("mask_iou", "foreground mask IoU", True, "-"),
)


def format_report(result: dict) -> str:
    acc = result["accuracy"]
    lines = [(f"inverse evaluation: {result['num_clips']} clip(s) of {result['data']}  model {result['model']}"
              f"  (trained steps: {result['model_info'].get('global_step', 'unknown')})")]
    if not result["model_trained"]:
        lines.append("WARNING: this model was never trained (global_step 0): its numbers are those of random weights")
    lines.append(f"{'metric':28s} {'model':>9s} {'baseline':>9s}  better  {'clearly (per-clip 95% CI)':31s} baseline")
    for key, label, higher, what in ROWS:
        m, b = acc["model"].get(key), acc["baseline"].get(key)
        if m is None and b is None:
            continue
        better = "-"
        if m is not None and b is not None and not (math.isnan(m) or math.isnan(b)):
            better = "yes" if (m > b if higher else m < b) else "NO"
        c = acc.get("comparison", {}).get(key)
        clearly = "" if c is None else (f"{CLEARLY[c['verdict']]:4s} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] "
                                         f"{c['wins']}/{c['clips']}")
        lines.append(f"{label:28s} {_fmt(m):>9s} {_fmt(b):>9s}  {better:6s}  {clearly:31s} "
                     f"{what if b is not None else 'n/a'}")
    if acc.get("comparison"):
        lines.append("(clearly: 'yes' when the 95% bootstrap interval of the per-clip improvement over the baseline is "
                     "above 0; the interval in the metric's unit, then clips won / clips)")
    if result.get("train_stats"):
        s = result["train_stats"]
        lines.append(f"(train means: roughness {s['roughness_mean']:.4f}, metallic {s['metallic_mean']:.4f})")
    tm = acc["temporal"]
    if tm["model"]:
        lines.append("temporal warp error with GT flow (normal: deg, others: mean abs), model vs ground-truth floor:")
        for name in PASSES_ORDER:
            if name in tm["model"]:
                lines.append(f"  {name:10s} model {_fmt(tm['model'][name], 4):>8s}   ground truth "
                             f"{_fmt(tm['ground_truth'].get(name), 4):>8s}")
    win = result.get("windows")
    if win:
        lines.append(f"window test: {len(win['clips'])} clip(s), window {win['window']}, overlap {win['overlap']}: "
                     "warp error on pairs crossing a window boundary vs within windows")
        lines.append(f"  {'pass':10s} {'run':12s} {'boundary':>9s} {'within':>9s} {'ratio':>7s}")
        for name in PASSES_ORDER:
            for run in ("blended", "independent", "ground_truth"):
                s = win.get(run, {}).get(name)
                if s:
                    lines.append(f"  {name:10s} {run:12s} {_fmt(s['boundary'], 4):>9s} {_fmt(s['within'], 4):>9s} "
                                 f"{_fmt(s['ratio'], 2):>7s}")
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def run(args) -> int:
    import torch

    from neural_render.errors import NeuralRenderError

    if args.window < 2 or not 0 <= args.overlap < args.window:
        raise NeuralRenderError(f"need --window >= 2 and 0 <= --overlap < --window, got {args.window}, {args.overlap}")
    if args.steps is not None and args.steps < 1:
        raise NeuralRenderError(f"--steps must be >= 1, got {args.steps}")
    if args.max_clips is not None and args.max_clips < 1:
        raise NeuralRenderError(f"--max-clips must be >= 1, got {args.max_clips}")
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(int(args.threads))
    try:
        return _evaluate(args)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(args) -> int:
    from neural_render.cli.inverse import model_dir
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    clips = _clips(args.data, args.max_clips)
    long_clips = _clips(args.long_data, None) if args.long_data else []
    model = model_dir(args.model)
    pipe = InverseRenderingPipeline.from_pretrained(model)
    stats = _train_stats(args, model)
    result = {"data": str(args.data), "model": str(model), "num_clips": len(clips),
              "model_info": dict(pipe.info), "model_trained": bool(pipe.is_trained),
              "settings": {"window": args.window, "overlap": args.overlap, "steps": args.steps or pipe.default_steps(),
                           "seed": args.seed, "mode": pipe.mode, "passes": list(pipe.passes)},
              "train_stats": stats}
    result["accuracy"] = evaluate_accuracy(pipe, clips, args, stats)
    if long_clips:
        result["long_data"] = str(args.long_data)
        result["windows"] = evaluate_windows(pipe, long_clips, args)
    print(format_report(result))
    if args.json:
        from neural_render.io.atomic import atomic_path

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(_jsonable(result), indent=1, allow_nan=False) + "\n")
        print(f"wrote {path}")
    return 0
