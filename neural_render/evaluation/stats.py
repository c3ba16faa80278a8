"""Statistics that can be trusted for model-vs-baseline tables (issue #22, item 3). Pure numpy.

A test set has many clips but only a few env maps, and clips lit by the same env map are correlated: a bootstrap
that resamples clips as if independent (:func:`flat_bootstrap`) gives intervals that are too narrow.
:func:`paired_hierarchical_bootstrap` resamples env maps (any cluster label), then clips within them.
:func:`compare_table` runs it for every row of a table (metrics x baselines / sets) and corrects the whole table
with Holm-Bonferroni (:func:`holm`), so "clearly better" holds at family-wise error ``alpha`` for the table.

Definitions shared by every function here (``B`` = ``n_boot`` resampled means ``t_1..t_B``):

* p-values (interval inversion, with the +1 correction): ``p_greater = (1 + #{t_b <= 0}) / (B + 1)`` (H0: mean <= 0),
  ``p_less = (1 + #{t_b >= 0}) / (B + 1)`` (H0: mean >= 0), ``p_two_sided = min(1, 2 * min(p_greater, p_less))``.
* the percentile interval at level ``1 - a``: ``[t_(r), t_(B + 1 - r)]`` (order statistics, 1-based) with
  ``r = floor(a * (B + 1) / 2)``. With this choice "the interval excludes 0" holds EXACTLY iff
  ``p_two_sided <= a`` (its low end is > 0 iff fewer than r resamples are <= 0, i.e. iff 2 (1 + #{t_b <= 0}) / (B + 1)
  <= a), so a verdict read off the interval and one read off the p-value never disagree. It needs ``r >= 1``, i.e.
  ``B + 1 >= 2 / a``; smaller ``n_boot`` raises.

Every result is JSON-friendly: plain ``float`` / ``int`` / ``str`` / ``bool`` and lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from neural_render.errors import NeuralRenderError

#: bound on the number of float64 values drawn at once (chunks of resamples), ~32 MB
_CHUNK_VALUES = 4_000_000
_TOL = 1e-12  # relative slack so that float rounding cannot split "p <= a" from "interval excludes 0"


def _vector(values, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NeuralRenderError(f"{what}: not numbers ({exc})") from None
    if array.ndim != 1:
        raise NeuralRenderError(f"{what}: expected a 1-D sequence (one value per clip), got shape {array.shape}")
    if array.size < 2:
        raise NeuralRenderError(f"{what}: needs at least 2 clips, got {array.size}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise NeuralRenderError(f"{what}: non-finite value (NaN/inf) at clip(s) {bad[:10].tolist()}")
    return array


def _check_args(n_boot: int, alpha: float) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise NeuralRenderError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise NeuralRenderError(f"alpha must be in (0, 1), got {alpha!r}")


def _rank(level: float, n_boot: int) -> int:
    """r of the module docstring: the interval at level 1 - ``level`` is [t_(r), t_(B+1-r)]."""
    r = int(math.floor(level * (n_boot + 1) / 2 * (1 + _TOL)))
    if r < 1:
        raise NeuralRenderError(f"n_boot={n_boot} is too small for a {1 - level:.6g} interval: needs n_boot >= "
                                f"{math.ceil(2 / level - 1)}")
    return r


def _interval(sorted_boot: np.ndarray, level: float) -> list[float]:
    r = _rank(level, sorted_boot.size)
    return [float(sorted_boot[r - 1]), float(sorted_boot[sorted_boot.size - r])]


def _summarise(diff: np.ndarray, boot: np.ndarray, alpha: float) -> dict:
    n_boot = boot.size
    p_greater = (1 + int(np.count_nonzero(boot <= 0))) / (n_boot + 1)
    p_less = (1 + int(np.count_nonzero(boot >= 0))) / (n_boot + 1)
    return {"mean": float(diff.mean()), "interval": _interval(np.sort(boot), alpha), "level": float(1 - alpha),
            "p_greater": float(p_greater), "p_less": float(p_less),
            "p_two_sided": float(min(1.0, 2 * min(p_greater, p_less))), "n_clips": int(diff.size),
            "n_boot": int(n_boot)}


def oriented_difference(model, baseline, higher_is_better: bool) -> np.ndarray:
    """Per-clip paired difference oriented so that > 0 means the model is better: ``model - baseline`` when the
    metric is higher-is-better (PSNR, dB), ``baseline - model`` otherwise (errors: RMSE, degrees). Shapes (N,) -> (N,),
    in the metric's unit."""
    m, b = _vector(model, "model values"), _vector(baseline, "baseline values")
    if m.size != b.size:
        raise NeuralRenderError(f"model and baseline need one value per clip each, got {m.size} and {b.size}")
    return m - b if higher_is_better else b - m


def flat_bootstrap(diff, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Clips-only bootstrap of the mean of ``diff`` (N,): each resample draws N clips with replacement.

    Treats clips as independent -- right only when they are (e.g. one clip per env map); kept for comparison with
    :func:`paired_hierarchical_bootstrap` and as its fallback for a single group. Returns {"mean", "interval"
    ([low, high] at level 1 - alpha, see the module docstring), "level", "p_greater", "p_less", "p_two_sided",
    "n_clips", "n_boot", "groups": 1, "method": "flat"}. Deterministic for a given ``seed`` (numpy Generator).
    """
    _check_args(n_boot, alpha)
    d = _vector(diff, "diff")
    return {**_summarise(d, _flat_boot(d, n_boot, seed), alpha), "groups": 1, "method": "flat"}


def _flat_boot(d: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = d.size
    chunk = max(1, _CHUNK_VALUES // n)
    return np.concatenate([d[rng.integers(0, n, size=(min(chunk, n_boot - start), n))].mean(axis=1)
                           for start in range(0, n_boot, chunk)])


def paired_hierarchical_bootstrap(diff, groups, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Two-stage (cluster) bootstrap of the mean of per-clip paired differences.

    diff: (N,) per-clip paired differences, model minus baseline oriented so that > 0 = model better (see
    :func:`oriented_difference`), in the metric's unit. groups: (N,) the cluster label of each clip (env map name or
    id; any values numpy can sort). Each of ``n_boot`` resamples draws G groups with replacement (G = number of
    groups), then, within each drawn group of n_g clips, n_g clips with replacement. The statistic is CLIP-WEIGHTED:
    the sum of all resampled clips' differences divided by their count (so a group with more clips weighs more, as
    in the plain "mean over clips" the tables report; the point estimate ``mean`` is exactly that mean). Intervals
    and p-values are defined in the module docstring.

    Resampling both stages with replacement is deliberately conservative: for equal group sizes n the resampled
    mean has variance (1/G) [var_g(group means) + mean_g(within-group variance) / n] (population variances), i.e.
    the within-group noise is counted twice -- once inside the group means, once by the second stage. With no group
    effect at all (iid clips) the interval is therefore wider than the flat one by a factor of about
    sqrt((G-1)/G + (n-1)/n) / sqrt((N-1)/N) (1.26 for 4 groups x 6 clips, at most sqrt(2)); with a real group
    effect (the case this exists for) the between-group term dominates and the flat interval is far too narrow.

    With a single group the first stage is void and this is :func:`flat_bootstrap` (the result says so:
    ``"groups": 1, "method": "flat", "note": ...``). Few groups (2-3) give a coarse, optimistic interval -- there is
    not much to resample -- which is still more honest than pretending the clips are independent.

    Returns {"mean", "interval", "level", "p_greater", "p_less", "p_two_sided", "n_clips", "n_boot", "groups",
    "method": "hierarchical" | "flat", ["note"]}. Deterministic for a given ``seed``.
    """
    _check_args(n_boot, alpha)
    d = _vector(diff, "diff")
    boot, n_groups = _hierarchical(d, groups, n_boot, seed)
    if n_groups == 1:
        return {**_summarise(d, boot, alpha), "groups": 1, "method": "flat",
                "note": "one group only: clips resampled as independent (flat bootstrap)"}
    return {**_summarise(d, boot, alpha), "groups": int(n_groups), "method": "hierarchical"}


def _hierarchical(d: np.ndarray, groups, n_boot: int, seed: int) -> tuple[np.ndarray, int]:
    """(n_boot,) resampled clip-weighted means and the number of groups (1: the flat bootstrap)."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.size != d.size:
        raise NeuralRenderError(f"groups needs one label per clip: {d.size} clips, groups of shape {labels.shape}")
    try:
        _, code = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise NeuralRenderError(f"groups: labels cannot be compared ({exc})") from None
    code = code.reshape(-1)
    sizes = np.bincount(code)
    n_groups = int(sizes.size)
    if n_groups == 1:
        return _flat_boot(d, n_boot, seed), 1
    # groups padded to the largest: padded[g, :sizes[g]] are group g's differences
    width = int(sizes.max())
    order = np.argsort(code, kind="stable")
    padded = np.zeros((n_groups, width))
    padded[code[order], np.arange(d.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)] = d[order]
    slot = np.arange(width)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_VALUES // (n_groups * width))
    parts = []
    for start in range(0, n_boot, chunk):
        count = min(chunk, n_boot - start)
        drawn = rng.integers(0, n_groups, size=(count, n_groups))              # (b, G) group drawn in each slot
        size = sizes[drawn]                                                    # (b, G) its clip count
        pick = np.minimum((rng.random((count, n_groups, width)) * size[..., None]).astype(np.int64),
                          size[..., None] - 1)                                 # (b, G, width) clip within group
        values = padded[drawn[..., None], pick]
        values = np.where(slot < size[..., None], values, 0.0)                 # only the first n_g draws count
        parts.append(values.sum(axis=(1, 2)) / size.sum(axis=1))
    return np.concatenate(parts), n_groups


def holm(p_values: Mapping[str, float] | Sequence[float], alpha: float = 0.05) -> dict:
    """Holm-Bonferroni step-down over m p-values (family-wise error <= alpha under any dependence).

    Sort ascending p_(1) <= ... <= p_(m) (ties keep input order); adjusted p_(i) = min(1, max_{j <= i} (m - j + 1)
    p_(j)) (monotone in i, capped at 1); reject iff adjusted p <= alpha -- the same as rejecting p_(1).. p_(s-1)
    where s is the first rank with p_(s) > alpha / (m - s + 1). Returns {"adjusted", "reject"} in the input's form
    (a dict keyed like ``p_values``, or lists in input order), plus "level": the per-comparison level alpha_i used
    for an interval consistent with the decision: alpha / (m - i + 1) for a rejected rank i, and alpha / (m - s + 1)
    (the level at which the step-down stopped) for every rank from s on.
    """
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise NeuralRenderError(f"alpha must be in (0, 1), got {alpha!r}")
    keys = list(p_values) if isinstance(p_values, Mapping) else None
    raw = [p_values[k] for k in keys] if keys is not None else list(p_values)
    p = np.asarray(raw, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise NeuralRenderError("holm needs at least one p-value")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise NeuralRenderError(f"p-values must be in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    factor = m - np.arange(m)                                   # m - i + 1 for 1-based rank i
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(factor * p[order]))
    reject_sorted = adjusted_sorted <= alpha * (1 + _TOL)
    stop = int(np.argmin(reject_sorted)) if not reject_sorted.all() else m    # 0-based first non-rejected rank
    level_sorted = alpha / np.where(np.arange(m) < stop, factor, factor[min(stop, m - 1)])
    adjusted, reject, level = np.empty(m), np.empty(m, dtype=bool), np.empty(m)
    adjusted[order], reject[order], level[order] = adjusted_sorted, reject_sorted, level_sorted
    out = {"adjusted": adjusted.tolist(), "reject": [bool(x) for x in reject], "level": level.tolist()}
    if keys is not None:
        out = {name: dict(zip(keys, values)) for name, values in out.items()}
    return {**out, "alpha": float(alpha), "m": int(m)}


def compare_table(rows: Sequence[Mapping], alpha: float = 0.05, n_boot: int = 10000, seed: int = 0) -> dict:
    """One table of model-vs-baseline comparisons, Holm-corrected across ALL its rows.

    rows: each a mapping {"name": str (unique), "model": (N,) per-clip metric of the model, "baseline": (N,) the
    baseline on the same clips in the same order, "groups": (N,) env-map label per clip, "higher_is_better": bool}.
    Per row: :func:`paired_hierarchical_bootstrap` of :func:`oriented_difference` (same ``seed`` for every row, so
    rows on the same clips share their resamples), then :func:`holm` over the rows' two-sided p-values. The
    corrected interval of a row is its bootstrap percentile interval at level 1 - alpha_i with alpha_i = holm's
    "level" (alpha / (m - rank + 1) for the rows the step-down rejects, the stopping level for the others); by the
    construction in the module docstring it excludes 0 iff the row's Holm-adjusted p <= alpha. Verdict: "better"
    if the corrected interval lies above 0, "worse" if below, else "tie". A baseline equal to the model (every
    difference exactly 0) has p = 1 and is always "tie".

    Returns {"alpha", "n_boot", "seed", "m", "correction": "holm", "rows": [per row {"name", "higher_is_better",
    "model_mean", "baseline_mean", "diff_mean" (oriented: > 0 = model better), "interval" (uncorrected, level
    1 - alpha), "corrected_interval", "corrected_level" (1 - alpha_i), "p" (two-sided, uncorrected), "p_holm",
    "reject", "verdict", "n_clips", "groups", "method", ["note"]}]}. Means are clip means in the metric's unit.
    """
    _check_args(n_boot, alpha)
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise NeuralRenderError("compare_table needs a non-empty list of rows")
    _rank(alpha / len(rows), n_boot)  # the smallest Holm level must have an interval: fail before any work
    names, results, boots = [], [], []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise NeuralRenderError(f"row {index}: expected a mapping, got {type(row).__name__}")
        missing = [k for k in ("name", "model", "baseline", "groups", "higher_is_better") if k not in row]
        if missing:
            raise NeuralRenderError(f"row {index}: missing {missing}")
        name = str(row["name"])
        if name in names:
            raise NeuralRenderError(f"row {index}: duplicate name {name!r}")
        names.append(name)
        higher = bool(row["higher_is_better"])
        try:
            diff = oriented_difference(row["model"], row["baseline"], higher)
            boot, n_groups = _hierarchical(diff, row["groups"], n_boot, seed)
            boot.sort()
        except NeuralRenderError as exc:
            raise NeuralRenderError(f"row {name!r}: {exc.reason}") from None
        result = {**_summarise(diff, boot, alpha), "groups": n_groups,
                  "method": "hierarchical" if n_groups > 1 else "flat"}
        model_mean, baseline_mean = (float(np.asarray(row[k], dtype=np.float64).mean()) for k in ("model", "baseline"))
        results.append({"name": name, "higher_is_better": higher, "model_mean": model_mean,
                        "baseline_mean": baseline_mean, "diff_mean": result["mean"], "interval": result["interval"],
                        "p": result["p_two_sided"], "n_clips": result["n_clips"], "groups": n_groups,
                        "method": result["method"],
                        **({} if n_groups > 1 else {"note": "one group only: flat bootstrap"})})
        boots.append(boot)
    corrected = holm([r["p"] for r in results], alpha=alpha)
    for result, boot, p_adj, reject, level in zip(results, boots, corrected["adjusted"], corrected["reject"],
                                                   corrected["level"]):
        low, high = _interval(boot, level)
        verdict = "better" if low > 0 else "worse" if high < 0 else "tie"
        if (verdict != "tie") != reject:  # guaranteed by construction; a failure here is a bug, not bad input
            raise AssertionError(f"row {result['name']!r}: interval [{low}, {high}] disagrees with Holm p {p_adj}")
        result.update({"corrected_interval": [low, high], "corrected_level": float(1 - level),
                       "p_holm": float(p_adj), "reject": bool(reject), "verdict": verdict})
    return {"alpha": float(alpha), "n_boot": int(n_boot), "seed": int(seed), "m": len(results),
            "correction": "holm", "rows": results}
