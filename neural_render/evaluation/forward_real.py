"""Forward rendering on real footage: re-render each held-out auto-labelled real clip from its G-buffers with the
lighting condition ABSENT, score against the real frames (issue #26).

Input: a folder of auto-labelled real clips (``neural-render autolabel`` output, e.g.
``data_cache/real_64_labelled/val``): clip folders with rgb (the real video) and the inverse model's G-buffers
(basecolor, normal, depth, roughness, metallic, mask) and NO env map. Every forward pass the clip stores is given;
the env condition is absent (``env=None``: env encodings zero with presence 0, no split-sum prior; the way the real
clips are seen in training). Methods (rows, :data:`ROWS`):

* the neural forward model with e_real in every block and the same model with e_synthetic (Realiz3D domain
  shifters; a model without shifters renders both identically);
* "real LoRA": a second forward pipeline (e.g. the model fine-tuned on real clips with a ``lora/`` adapter), at its
  default domain, when given;
* trivial baselines: the auto-labelled basecolor shown as RGB (every pixel, linear); the mean colour of the real
  frame (an oracle: it reads the target).

Scores: PSNR (dB) and SSIM per clip on display sRGB of clamp(rgb, 0, 1), mean over frames, exactly as
``eval forward`` (:func:`neural_render.evaluation.forward.scores`). Comparisons (:data:`PAIRS`, PSNR and SSIM):
paired per clip, hierarchical bootstrap over SOURCES (a clip's source video / photo, :func:`clip_source`) then
clips within them, Holm-corrected over the whole table (:func:`neural_render.evaluation.forward.method_rows`).

Domain switch: mean |render(e_real) - render(e_synthetic)| over all pixels (all clips, frames, channels), in linear
RGB and in display units (sRGB of clamp(x, 0, 1) in [0, 1]), also per clip; exactly 0 for zero-initialised shifters.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from neural_render.errors import NeuralRenderError

logger = logging.getLogger(__name__)

KIND = "forward_real"
E_REAL = "neural forward, e_real"
E_SYNTHETIC = "neural forward, e_synthetic"
LORA = "real LoRA"
BASECOLOR = "trivial: auto-labelled basecolor as RGB"
ORACLE = "trivial: mean colour of the real frame (oracle)"
ROWS = (E_REAL, E_SYNTHETIC, LORA, BASECOLOR, ORACLE)
#: (method, baseline) pairs compared on PSNR and SSIM (pairs with a method not rendered are left out)
PAIRS = ((E_REAL, E_SYNTHETIC), (LORA, E_SYNTHETIC), (E_REAL, LORA), (E_REAL, BASECOLOR))
TITLE = "forward on real footage (re-rendered from auto-labelled G-buffers, lighting absent)"


def clip_source(clip_dir: str | Path) -> str:
    """The source of a real clip (the bootstrap's group): its folder name without a trailing ``_NN`` index
    (``box_03`` -> ``box``; ``photo_fruits`` -> itself)."""
    return re.sub(r"_\d+$", "", Path(clip_dir).name)


def check_real_clips(clips: list[Path]) -> list[list[str]]:
    """Check every clip before any model work: it has rgb frames and at least one forward pass; returns the passes
    to read of each clip: its forward passes, and its mask when stored (the mask is not rendered from, but it marks
    where normals must be unit length: the inverse model writes zero normals on background pixels).
    NeuralRenderError naming the clip otherwise."""
    from neural_render.io import read_meta
    from neural_render.pipelines.forward_clip import select_passes

    if not clips:
        raise NeuralRenderError("no clips to evaluate")
    passes = []
    for clip_dir in clips:
        meta = read_meta(clip_dir)
        if meta.rgb_source is None:
            raise NeuralRenderError("clip has no rgb frames to score against (a real clip needs its video)", clip_dir)
        try:
            passes.append(select_passes(meta, None, clip_dir) + (["mask"] if "mask" in meta.passes else []))
        except NeuralRenderError as err:
            raise NeuralRenderError(f"not an auto-labelled clip: {err.reason} (run `neural-render autolabel` on the "
                                    "real clips first)", clip_dir) from None
    return passes


def _display(video):
    """(..., 3, H, W) linear -> display sRGB of clamp(x, 0, 1) in [0, 1]."""
    from neural_render.models.conditioning import display_pack

    return (display_pack(video) + 1.0) * 0.5


def evaluate_real(pipe, clips: list[Path], lora_pipe=None, seed: int = 0, log=None) -> dict:
    """Evaluate the :class:`~neural_render.pipelines.forward.ForwardPipeline` ``pipe`` (and ``lora_pipe``, when
    given) on the auto-labelled real ``clips`` (module doc); ``seed``: sampling and bootstrap seed; ``log``: where
    the per-clip progress lines go (default: this module's logger, INFO).

    Returns {"kind": "forward_real", "num_clips", "clips" (names), "groups" (sorted sources), "sources" (source per
    clip), "lighting": "absent", "domain_shifters" (bool), "per_clip" {method: [[psnr dB, ssim] per clip]}, "mean"
    {method: {"psnr_db", "ssim", "clips"}}, "comparison" (compare_table result), "domain_switch" {"domains":
    ["real", "synthetic"], "mean_abs", "max_abs" (linear RGB), "mean_abs_display", "max_abs_display" (display
    sRGB in [0, 1]), "per_clip": [{"clip", "mean_abs", "mean_abs_display"}]}}; the same general structure as
    :func:`neural_render.evaluation.forward.evaluate`'s result.
    """
    import torch

    from neural_render.evaluation.forward import mean_colour, method_means, method_rows, scores
    from neural_render.io import read_clip

    log = log or logger.info
    passes = check_real_clips(clips)
    per_method: dict[str, list] = {}
    sources = [clip_source(c) for c in clips]
    switch = []  # per clip (name, sum |d| linear, sum |d| display, max linear, max display, count)

    def add(name, pred, target):
        per_method.setdefault(name, []).append(scores(pred, target))

    def render(p, gbuffer, camera, **domain):
        return p.render(gbuffer, camera, None, generator=torch.Generator().manual_seed(seed), **domain).rgb

    for clip_dir, clip_passes in zip(clips, passes):
        clip = read_clip(clip_dir, passes=clip_passes)
        gb, cam, gt = clip.gbuffer.replace(mask=None), clip.camera, clip.rgb
        real = render(pipe, gb, cam, domain="real")
        synthetic = render(pipe, gb, cam, domain="synthetic")
        add(E_REAL, real, gt)
        add(E_SYNTHETIC, synthetic, gt)
        if lora_pipe is not None:
            add(LORA, render(lora_pipe, gb, cam), gt)
        basecolor = gb.basecolor if gb.basecolor is not None else torch.zeros_like(gt)
        add(BASECOLOR, basecolor, gt)
        add(ORACLE, mean_colour(gt), gt)
        linear, display = (real - synthetic).abs(), (_display(real) - _display(synthetic)).abs()
        switch.append((clip_dir.name, float(linear.sum()), float(display.sum()), float(linear.max()),
                       float(display.max()), linear.numel()))
        log(f"  {clip_dir.name}: e_real {per_method[E_REAL][-1][0]:.2f} dB, e_synthetic "
            f"{per_method[E_SYNTHETIC][-1][0]:.2f} dB, basecolor {per_method[BASECOLOR][-1][0]:.2f} dB")
    count = sum(s[5] for s in switch)
    return {"kind": KIND, "num_clips": len(clips), "clips": [c.name for c in clips], "groups": sorted(set(sources)),
            "sources": sources, "lighting": "absent", "domain_shifters": pipe.domain_shifters is not None,
            "per_clip": per_method, "mean": method_means(per_method),
            "comparison": method_rows(per_method, sources, list(PAIRS), seed),
            "domain_switch": {"domains": ["real", "synthetic"], "mean_abs": sum(s[1] for s in switch) / count,
                              "max_abs": max(s[3] for s in switch),
                              "mean_abs_display": sum(s[2] for s in switch) / count,
                              "max_abs_display": max(s[4] for s in switch),
                              "per_clip": [{"clip": s[0], "mean_abs": s[1] / s[5], "mean_abs_display": s[2] / s[5]}
                                           for s in switch]}}


def switch_line(switch: dict) -> str:
    """One line on the domain switch of a result (:func:`evaluate_real`'s ``domain_switch``)."""
    return (f"domain switch e_{switch['domains'][0]} -> e_{switch['domains'][1]}: mean |change| "
            f"{switch['mean_abs']:.3g} linear RGB, {switch['mean_abs_display']:.3g} display sRGB [0, 1] (max "
            f"{switch['max_abs']:.3g} / {switch['max_abs_display']:.3g}; 0 for untrained shifters)")


def format_report(result: dict) -> str:
    """The printed table of a result of :func:`evaluate_real` (plus the CLI's "data" / "split" / "lora_model")."""
    from neural_render.evaluation.forward import method_table_lines

    lines = [f"{TITLE}: {result['num_clips']} clips from {len(result['groups'])} source(s) of "
             f"{result.get('data', '?')} (split: {result.get('split') or 'unknown'}); PSNR / SSIM vs the real frames "
             "on display sRGB of clamp(x, 0, 1), mean over clips; the bootstrap resamples sources, then clips",
             *method_table_lines(result, 50, "first method")]
    switch = result["domain_switch"]
    lines.append(switch_line(switch) + ("" if result.get("domain_shifters", True) else "; this model has none"))
    lines += [f"  {c['clip']}: {c['mean_abs']:.3g} linear, {c['mean_abs_display']:.3g} display"
              for c in switch["per_clip"]]
    if result.get("lora_model"):
        lines.append(f"real LoRA: {result['lora_model']}")
    return "\n".join(lines)
