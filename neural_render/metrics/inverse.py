"""Inverse-rendering evaluation from tensors (pure functions): per-clip accuracy, trivial baselines, aggregation.

Used by ``neural-render eval inverse``; nothing here reads files or runs a model.

Per clip (:func:`clip_accuracy`), on the ground-truth valid pixels (``gt.mask`` > 0.5):
  normal angles (pooled over every pixel of every clip at aggregation), albedo si-PSNR, roughness and metallic RMSE,
  depth scale-and-shift-invariant AbsRel, and the foreground-mask IoU when the prediction has a mask.
Aggregation (:func:`aggregate_accuracy`): normal statistics over the pooled pixels; the other metrics are the mean
over clips (each clip weighs the same; an infinite si-PSNR of a perfect clip makes the mean infinite).

Trivial baselines (:func:`baseline_gbuffer`): constant camera-facing normal (0, 0, 1); the input RGB clamped to
[0, 1] as albedo (what the model sees, so highlights do not dominate the scale fit); roughness and metallic set to
the training-set means; a constant depth (its SSI fit is the mean depth).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError
from neural_render.metrics.gbuffer import (
    albedo_si_psnr,
    angle_stats,
    depth_absrel_ssi,
    masked_rmse,
    normal_angles,
)
from neural_render.metrics.temporal import temporal_warp_error
from neural_render.types.gbuffer import GBuffer

#: per-pass warp-error kind: normals by angle (degrees), everything else by mean absolute difference
TEMPORAL_KINDS = {"basecolor": "abs", "normal": "angle", "depth": "abs", "roughness": "abs", "metallic": "abs"}


def _gt_mask(gt: GBuffer) -> Tensor:
    if gt.mask is None:
        raise NeuralRenderError("ground-truth G-buffer needs a mask pass for evaluation")
    return gt.mask > 0.5


def clip_accuracy(pred: GBuffer, gt: GBuffer) -> dict:
    """Accuracy of ``pred`` against ``gt`` (both (B, T, C, H, W), same size) on gt-valid pixels.

    Returns {"normal_angles": 1-D tensor (degrees, all valid pixels of the batch), "albedo_si_psnr": [B floats],
    "roughness_rmse", "metallic_rmse", "depth_absrel", "mask_iou": [B floats]}; a key is absent when either
    side lacks the pass.
    """
    valid = _gt_mask(gt)
    out: dict = {}
    if pred.normal is not None and gt.normal is not None:
        out["normal_angles"] = normal_angles(pred.normal, gt.normal, valid)
    if pred.basecolor is not None and gt.basecolor is not None:
        out["albedo_si_psnr"] = albedo_si_psnr(pred.basecolor, gt.basecolor, valid).tolist()
    for name in ("roughness", "metallic"):
        if getattr(pred, name) is not None and getattr(gt, name) is not None:
            out[f"{name}_rmse"] = masked_rmse(getattr(pred, name), getattr(gt, name), valid).tolist()
    if pred.depth is not None and gt.depth is not None:
        out["depth_absrel"] = depth_absrel_ssi(pred.depth, gt.depth, valid).tolist()
    if pred.mask is not None:
        p = pred.mask > 0.5
        inter = (p & valid).flatten(1).sum(1).double()
        union = (p | valid).flatten(1).sum(1).double()
        out["mask_iou"] = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).tolist()
    return out


def aggregate_accuracy(records: list[dict]) -> dict:
    """Merge :func:`clip_accuracy` results -> flat summary {"normal_mean_deg", "normal_median_deg",
    "normal_pct_11.25", "normal_pct_22.5", "normal_pct_30", "albedo_si_psnr_db", "roughness_rmse",
    "metallic_rmse", "depth_absrel", "mask_iou", "clips"} (keys only for metrics present)."""
    summary: dict = {"clips": 0}
    angles = [r["normal_angles"] for r in records if "normal_angles" in r]
    if angles:
        stats = angle_stats(torch.cat([a.reshape(-1) for a in angles]))
        summary.update({"normal_mean_deg": stats["mean"], "normal_median_deg": stats["median"]})
        summary.update({f"normal_{k}": v for k, v in stats.items() if k.startswith("pct_")})
    names = {"albedo_si_psnr": "albedo_si_psnr_db", "roughness_rmse": "roughness_rmse",
             "metallic_rmse": "metallic_rmse", "depth_absrel": "depth_absrel", "mask_iou": "mask_iou"}
    for key, name in names.items():
        values = [v for r in records for v in r.get(key, [])]
        finite = [v for v in values if not math.isnan(v)]
        if values:
            summary[name] = sum(finite) / len(finite) if finite else math.nan
            summary["clips"] = max(summary["clips"], len(values))
    return summary


def baseline_gbuffer(rgb: Tensor, like: GBuffer, roughness_mean: float | None,
                     metallic_mean: float | None) -> GBuffer:
    """Trivial predictions (module doc) shaped like ``like`` (B, T, ., H, W); rgb: (B, T, 3, H, W) linear.

    Roughness / metallic are omitted when their mean is None (no training statistics available)."""
    b, t, h, w = like.shape
    passes = {"normal": torch.tensor([0.0, 0.0, 1.0]).reshape(1, 1, 3, 1, 1).expand(b, t, 3, h, w).clone(),
              "basecolor": rgb.clamp(0.0, 1.0).float(), "depth": torch.ones(b, t, 1, h, w)}
    for name, value in (("roughness", roughness_mean), ("metallic", metallic_mean)):
        if value is not None:
            passes[name] = torch.full((b, t, 1, h, w), float(value))
    return GBuffer(**passes)


def temporal_errors(gbuffer: GBuffer, flow: Tensor, flow_valid: Tensor, object_id: Tensor,
                    mask: Tensor | None) -> dict[str, Tensor]:
    """Warp error per frame pair {pass: (B, T-1) float64} for every pass of ``gbuffer`` in :data:`TEMPORAL_KINDS`
    (normals in degrees, others mean absolute difference), restricted to ``mask`` (gt foreground) when given."""
    return {name: temporal_warp_error(x, flow, flow_valid, object_id, mask, TEMPORAL_KINDS[name])
            for name, x in gbuffer.passes.items() if name in TEMPORAL_KINDS}


def nanmean(values) -> float:
    """Mean of the non-NaN entries of a tensor or list (NaN when there is none)."""
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


#: error metrics of :func:`aggregate_accuracy` (lower = better) that :func:`baseline_relative_error` averages
RELATIVE_ERROR_KEYS = ("normal_mean_deg", "roughness_rmse", "metallic_rmse", "depth_absrel")


def baseline_relative_error(model: dict, baseline: dict) -> float:
    """One number for a model's :func:`aggregate_accuracy` (``model``) against the trivial baselines' (``baseline``):
    the mean over the five passes of model error / baseline error -- normal mean angle, roughness and metallic RMSE,
    depth AbsRel, and albedo MSE from si-PSNR (10^(-PSNR/10)). Lower is better; 1.0 = no better than the baselines on
    average. Used to select a checkpoint on a validation set (scripts/train_inverse_tiny.py)."""
    missing = [k for k in (*RELATIVE_ERROR_KEYS, "albedo_si_psnr_db") if k not in model or k not in baseline]
    if missing:
        raise NeuralRenderError(f"accuracy records lack {missing}")
    ratios = [float(model[k]) / float(baseline[k]) for k in RELATIVE_ERROR_KEYS]
    ratios.append(10 ** ((float(baseline["albedo_si_psnr_db"]) - float(model["albedo_si_psnr_db"])) / 10))
    return sum(ratios) / len(ratios)


def paired_comparison(model: list[float], baseline: list[float], higher_is_better: bool, resamples: int = 10000,
                      seed: int = 0) -> dict:
    """Is a model CLEARLY better than a baseline? Per-clip paired test of one metric.

    model / baseline: the metric per clip (same clips, same order). The improvement per clip is model - baseline
    (``higher_is_better``) or baseline - model; pairs with a non-finite value are dropped. Returns {"clips": pairs
    used, "wins": clips where the model is better, "mean_improvement", "ci95": [low, high] (percentile bootstrap of
    the mean over clips, ``resamples`` resamples, seeded), "verdict": "better" (the whole interval above 0), "worse"
    (below 0), "tie" (contains 0) or "n/a" (fewer than 2 pairs)}.
    """
    if len(model) != len(baseline):
        raise NeuralRenderError(f"paired comparison needs equal lengths, got {len(model)} and {len(baseline)}")
    m = torch.as_tensor(model, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(baseline, dtype=torch.float64).reshape(-1)
    d = (m - b) if higher_is_better else (b - m)
    d = d[torch.isfinite(d)]
    n = int(d.numel())
    if n < 2:
        return {"clips": n, "wins": int((d > 0).sum()), "mean_improvement": float(d.mean()) if n else math.nan,
                "ci95": [math.nan, math.nan], "verdict": "n/a"}
    generator = torch.Generator().manual_seed(int(seed))
    means = d[torch.randint(0, n, (int(resamples), n), generator=generator)].mean(dim=1)
    low, high = (float(q) for q in torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)))
    verdict = "better" if low > 0 else "worse" if high < 0 else "tie"
    return {"clips": n, "wins": int((d > 0).sum()), "mean_improvement": float(d.mean()), "ci95": [low, high],
            "verdict": verdict}
