"""Forward-rendering evaluation: render each clip's EXACT G-buffers under its env map, score against the path tracer.

Every method renders each clip of the dataset (a ``neural-render synth`` folder; its env map, rotation and per-frame
cameras) and is scored against the path-traced RGB with PSNR and SSIM per clip on display sRGB of clamp(x, 0, 1)
(the space the neural model renders in). Methods:

* neural forward model, all passes; normal only; basecolor only (partial G-buffers, presence masks 0 elsewhere);
* classical split-sum shader (render/shade.py) on the exact G-buffers; the same pixel-filtered (Gaussian, sigma
  0.5 px: the path tracer integrates each pixel's footprint while G-buffers are point-sampled, so the plain shader
  is aliased at edges; 0.5 px maximised the shader's PSNR on TRAIN clips) -- the strongest classical baseline;
* trivial: basecolor as RGB (the env along the view ray on background pixels); mean colour of the GT (an oracle).

Comparisons (Holm-corrected hierarchical bootstrap over env maps then clips, :mod:`.stats`): the neural model
(all passes) against the plain and the pixel-filtered split-sum shader, PSNR and SSIM. Models with Realiz3D domain
shifters are also rendered with the OTHER domain embedding; the mean / max absolute change of the render (linear
RGB) is reported: exactly 0 for untrained (zero-initialised) shifters. ``reference``: a second forward pipeline (e.g.
the model a fine-tune started from) rendered the same way and compared with the model, so what a fine-tune costs
on synthetic clips is measured with an interval (issue #26: at most 0.3 dB).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

logger = logging.getLogger(__name__)

NEURAL = "neural forward, all passes"
CLASSICAL = "classical split-sum, exact G-buffers"
FILTERED = "classical split-sum + pixel filter (sigma 0.5 px)"


def scores(pred, target) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two (1, T, 3, H, W) linear videos on display sRGB of clamp(x, 0, 1), mean over frames."""
    from neural_render.data.forward_data import display_pack
    from neural_render.metrics import psnr, ssim

    a, b = (display_pack(pred) + 1.0) * 0.5, (display_pack(target) + 1.0) * 0.5
    return float(psnr(a, b).mean()), float(ssim(a, b).mean())


def mean_colour(video):
    """The "mean colour" oracle of a (B, T, 3, H, W) video: each clip's mean colour over frames and pixels,
    broadcast to the video's shape (same units as ``video``)."""
    return video.mean(dim=(1, 3, 4), keepdim=True).expand_as(video)


def method_rows(per_method: dict[str, list], groups: list[str], pairs: list[tuple[str, str]], seed: int = 0,
                n_boot: int = 10000) -> dict:
    """:func:`~neural_render.evaluation.stats.compare_table` of ``(method, baseline)`` pairs on PSNR and SSIM;
    ``per_method``: {method: [(psnr, ssim) per clip]} over the same clips as ``groups``; a row leaves out the
    clips where either value is not finite."""
    from neural_render.evaluation.stats import compare_table

    rows = []
    for method, baseline in pairs:
        if method not in per_method or baseline not in per_method:
            continue
        for k, metric in enumerate(("PSNR dB", "SSIM")):
            pairs = [(m[k], b[k], g) for m, b, g in zip(per_method[method], per_method[baseline], groups)
                     if math.isfinite(m[k]) and math.isfinite(b[k])]  # e.g. the infinite PSNR of a perfect clip
            if len(pairs) >= 2:
                rows.append({"name": f"{method} vs {baseline} ({metric})", "model": [p[0] for p in pairs],
                             "baseline": [p[1] for p in pairs], "groups": [p[2] for p in pairs],
                             "higher_is_better": True})
    return compare_table(rows, n_boot=n_boot, seed=seed) if rows else {"rows": []}


def method_means(per_method: dict[str, list]) -> dict:
    """{method: {"psnr_db", "ssim", "clips"}}: the mean over clips of :func:`scores` per method."""
    return {name: {"psnr_db": sum(p for p, _ in v) / len(v), "ssim": sum(s for _, s in v) / len(v), "clips": len(v)}
            for name, v in per_method.items()}


def method_table_lines(result: dict, width: int, who: str) -> list[str]:
    """The means table and the corrected comparisons of a forward / relight result (``who``: what + means)."""
    from neural_render.evaluation.common import comparison_lines

    lines = [f"{'method':{width}s} {'PSNR dB':>8s} {'SSIM':>7s} {'clips':>6s}"]
    lines += [f"{name:{width}s} {m['psnr_db']:8.2f} {m['ssim']:7.4f} {m['clips']:6d}"
              for name, m in result["mean"].items()]
    header = f"paired per clip (+ = {who} better), hierarchical bootstrap, Holm over {{m}}:"
    return lines + comparison_lines(result["comparison"], header, width + 25)


def evaluate(pipe, clips: list[Path], *, domain: str = "synthetic", seed: int = 0, log=None, reference=None,
             reference_name: str = "reference model") -> dict:
    """Forward evaluation of the :class:`~neural_render.pipelines.forward.ForwardPipeline` ``pipe`` on ``clips``;
    ``log``: where the per-clip progress lines go (default: this module's logger, INFO); ``reference``: another
    ForwardPipeline, its row named ``"<reference_name>, all passes"`` (module doc)."""
    import torch

    from neural_render.evaluation.common import clip_group
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.render.pixel_filter import pixel_filter
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.types import GBuffer

    log = log or logger.info
    per_method: dict[str, list] = {}
    groups: list[str] = []
    other_domain = "real" if domain == "synthetic" else "synthetic"
    switch: list[tuple[float, float]] = []

    def add(name, pred, target):
        per_method.setdefault(name, []).append(scores(pred, target))

    def neural(gbuffer, camera, env, dom=domain, model=pipe):
        return model.render(gbuffer, camera, env, generator=torch.Generator().manual_seed(seed), domain=dom).rgb

    for clip_dir in clips:
        clip = read_clip(clip_dir)
        env = read_clip_envmap(clip_dir, clip.meta)
        gb, cam, gt, ibl = clip.gbuffer, clip.camera, clip.rgb, prepare_ibl(env)
        groups.append(clip_group(clip_dir))
        unmasked = gb.replace(mask=None)
        rendered = neural(unmasked, cam, env)
        add(NEURAL, rendered, gt)
        if reference is not None:
            add(f"{reference_name}, all passes", neural(unmasked, cam, env, model=reference), gt)
        if pipe.domain_shifters is not None:
            other = neural(unmasked, cam, env, other_domain)
            add(f"neural forward, all passes, e_{other_domain} everywhere", other, gt)
            difference = (other - rendered).abs()
            switch.append((float(difference.mean()), float(difference.max())))
        classical = shade(gb, cam, ibl)
        add(CLASSICAL, classical, gt)
        add(FILTERED, pixel_filter(classical), gt)
        sky = shade(GBuffer(normal=gb.normal, mask=torch.zeros_like(gb.mask)), cam, ibl)
        add("trivial: basecolor as RGB", gb.mask * gb.basecolor + (1 - gb.mask) * sky, gt)
        add("trivial: mean colour of GT (oracle)", mean_colour(gt), gt)
        add("neural forward, normal only", neural(GBuffer(normal=gb.normal), cam, env), gt)
        add("neural forward, basecolor only", neural(GBuffer(basecolor=gb.basecolor), cam, env), gt)
        add("classical split-sum, normal only", shade(GBuffer(normal=gb.normal, mask=gb.mask), cam, ibl), gt)
        log(f"  {clip_dir.name}: neural {per_method[NEURAL][-1][0]:.2f} dB, filtered classical "
            f"{per_method[FILTERED][-1][0]:.2f} dB")
    means = method_means(per_method)
    result = {"num_clips": len(clips), "clips": [c.name for c in clips], "groups": sorted(set(groups)),
              "per_clip": per_method, "mean": means,
              "comparison": method_rows(per_method, groups, [(NEURAL, FILTERED), (NEURAL, CLASSICAL)]
                                        + ([(NEURAL, f"{reference_name}, all passes")] if reference is not None
                                           else []), seed)}
    if switch:
        result["domain_switch"] = {"domains": [domain, other_domain],
                                   "mean_abs": sum(m for m, _ in switch) / len(switch),
                                   "max_abs": max(m for _, m in switch)}
    return result


def format_report(result: dict) -> str:
    lines = [f"forward rendering, {result['num_clips']} clips in {len(result['groups'])} env-map group(s) of "
             f"{result['data']} (split: {result.get('split') or 'unknown'}); PSNR / SSIM vs path-traced RGB on display "
             "sRGB of clamp(x, 0, 1), mean over clips", *method_table_lines(result, 55, "first method")]
    switch = result.get("domain_switch")
    if switch:
        lines.append(f"domain switch e_{switch['domains'][0]} -> e_{switch['domains'][1]}: mean |difference| "
                     f"{switch['mean_abs']:.3g}, max {switch['max_abs']:.3g} (linear RGB; 0 for untrained shifters)")
    return "\n".join(lines)
