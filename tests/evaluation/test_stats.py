"""Known answers for neural_render.evaluation.stats: the hierarchical (env map, then clip) bootstrap, Holm-Bonferroni,
and the Holm-corrected comparison table behind the evaluations' "clearly better" verdicts (issue #22, item 3)."""

import json
import math

import numpy as np
import pytest

from neural_render.errors import NeuralRenderError
from neural_render.evaluation import stats

GROUPS = np.repeat(np.arange(4), 6)  # 4 env maps x 6 clips


def _width(result):
    low, high = result["interval"]
    return high - low


def _grouped(seed, group_sd, clip_sd, shift=0.0, groups=GROUPS):
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1
    return shift + rng.normal(0, group_sd, n_groups)[groups] + rng.normal(0, clip_sd, groups.size)


def test_correlated_clips_widen_the_interval():
    # a large env-map effect (sd 1) and small within-map noise (sd 0.1): the 24 clips carry ~4 clips of information;
    # the flat bootstrap's interval is ~sqrt(6) too narrow, the hierarchical one is not
    ratios = []
    for seed in range(5):
        diff = _grouped(seed, group_sd=1.0, clip_sd=0.1)
        ratios.append(_width(stats.paired_hierarchical_bootstrap(diff, GROUPS, seed=seed))
                      / _width(stats.flat_bootstrap(diff, seed=seed)))
    assert min(ratios) > 1.5, ratios


def test_iid_clips_give_close_widths():
    # no group effect: the two widths are close. Two-stage resampling counts the within-group noise twice, so the
    # expected width ratio is sqrt((G-1)/G + (n-1)/n) / sqrt((N-1)/N) = sqrt(0.75 + 0.8333) / sqrt(0.9583) = 1.286
    # for G=4 groups of n=6 (N=24), averaged here over 20 data sets
    ratios = []
    for seed in range(20):
        diff = _grouped(100 + seed, group_sd=0.0, clip_sd=1.0)
        ratios.append(_width(stats.paired_hierarchical_bootstrap(diff, GROUPS, n_boot=4000, seed=seed))
                      / _width(stats.flat_bootstrap(diff, n_boot=4000, seed=seed)))
    assert 0.9 < float(np.mean(ratios)) < 1.35, ratios


def test_bootstrap_variances_match_their_formulas():
    # equal groups of n clips: the resampled mean's variance is (1/G) [var(group means) + mean(within var) / n]
    # (population variances) for the hierarchical bootstrap, var(diff) / N for the flat one
    diff = _grouped(7, group_sd=1.0, clip_sd=0.5)
    by_group = diff.reshape(4, 6)
    expected = (by_group.mean(axis=1).var() + by_group.var(axis=1).mean() / 6) / 4
    boot, n_groups = stats._hierarchical(diff, GROUPS, 20000, 0)
    assert n_groups == 4 and boot.var() == pytest.approx(expected, rel=0.05)
    assert stats._flat_boot(diff, 20000, 0).var() == pytest.approx(diff.var() / diff.size, rel=0.05)


def test_unequal_groups_and_string_labels():
    # clip-weighted: the point estimate is the plain mean over clips whatever the group sizes
    diff = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0])
    labels = ["a"] * 6 + ["b"] * 2
    result = stats.paired_hierarchical_bootstrap(diff, labels, n_boot=2000)
    assert result["mean"] == pytest.approx(1.5) and result["groups"] == 2 and result["method"] == "hierarchical"
    low, high = result["interval"]
    assert 1.0 <= low <= 1.5 <= high <= 3.0


def test_single_group_degrades_to_the_flat_bootstrap():
    diff = _grouped(3, group_sd=0.0, clip_sd=1.0)
    one = stats.paired_hierarchical_bootstrap(diff, ["env"] * diff.size, n_boot=2000, seed=5)
    flat = stats.flat_bootstrap(diff, n_boot=2000, seed=5)
    assert one["groups"] == 1 and one["method"] == "flat" and "one group" in one["note"]
    assert one["interval"] == flat["interval"] and one["p_two_sided"] == flat["p_two_sided"]


def test_interval_excludes_zero_exactly_when_p_is_small():
    rng = np.random.default_rng(11)
    for trial in range(40):
        diff = rng.normal(rng.uniform(-0.6, 0.6), 1.0, 24)
        for alpha in (0.05, 0.01, 0.05 / 7):
            r = stats.paired_hierarchical_bootstrap(diff, GROUPS, n_boot=3000, seed=trial, alpha=alpha)
            excludes = r["interval"][0] > 0 or r["interval"][1] < 0
            assert excludes == (r["p_two_sided"] <= alpha), (trial, alpha, r)


def test_holm_hand_computed():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4, alpha = 0.05. Sorted: 0.005 (input 3), 0.01 (0), 0.03 (2), 0.04 (1).
    #   rank 1: 4 x 0.005 = 0.02 -> 0.02  (0.005 <= 0.05/4 = 0.0125: reject)
    #   rank 2: 3 x 0.01  = 0.03 -> 0.03  (0.01 <= 0.05/3 = 0.0167: reject)
    #   rank 3: 2 x 0.03  = 0.06 -> 0.06  (0.03 > 0.05/2 = 0.025: stop, keep this and the rest)
    #   rank 4: 1 x 0.04  = 0.04 -> max(0.06, 0.04) = 0.06 (monotone)
    result = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert result["adjusted"] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert result["reject"] == [True, False, False, True]
    # interval levels: alpha / (m - rank + 1) while rejecting, then the stopping level 0.05 / 2 for ranks 3 and 4
    assert result["level"] == pytest.approx([0.05 / 3, 0.025, 0.025, 0.0125])
    named = stats.holm({"normal": 0.5, "albedo": 0.9}, alpha=0.05)  # 2 x 0.5 = 1.0; max(1.0, 0.9) capped at 1
    assert named["adjusted"] == {"normal": 1.0, "albedo": 1.0} and named["reject"] == {"normal": False, "albedo": False}
    with pytest.raises(NeuralRenderError, match="in \\[0, 1\\]"):
        stats.holm([0.1, math.nan])
    with pytest.raises(NeuralRenderError, match="at least one"):
        stats.holm([])


def _row(name, model, baseline, higher_is_better=True, groups=GROUPS):
    return {"name": name, "model": model, "baseline": baseline, "groups": groups, "higher_is_better": higher_is_better}


def test_identical_baseline_is_a_tie_even_next_to_strong_rows():
    rng = np.random.default_rng(2)
    model = rng.normal(30, 2, 24)
    better = _row("psnr_vs_blur", model, model - 3 - rng.normal(0, 0.1, 24))
    worse = _row("psnr_vs_oracle", model, model + 3 + rng.normal(0, 0.1, 24))
    same = _row("psnr_vs_itself", model, model.copy())
    table = stats.compare_table([better, same, worse], n_boot=4000)
    rows = {r["name"]: r for r in table["rows"]}
    tie = rows["psnr_vs_itself"]
    assert tie["verdict"] == "tie" and tie["p"] == 1.0 and tie["p_holm"] == 1.0 and not tie["reject"]
    assert tie["diff_mean"] == 0.0 and tie["corrected_interval"] == [0.0, 0.0]
    assert rows["psnr_vs_blur"]["verdict"] == "better" and rows["psnr_vs_oracle"]["verdict"] == "worse"
    alone = stats.paired_hierarchical_bootstrap(np.zeros(24), GROUPS)
    assert alone["p_two_sided"] == 1.0 and alone["interval"] == [0.0, 0.0]


def test_consistent_gains_losses_and_orientation():
    rng = np.random.default_rng(4)
    baseline_db = rng.normal(25, 3, 24)
    baseline_deg = rng.uniform(20, 40, 24)
    rows = [_row("psnr_better", baseline_db + 1 + rng.normal(0, 0.2, 24), baseline_db),
            _row("psnr_worse", baseline_db - 1 + rng.normal(0, 0.2, 24), baseline_db),
            # an error metric: the model's angle is 5 degrees LOWER -> better
            _row("normal_deg_better", baseline_deg - 5 + rng.normal(0, 0.5, 24), baseline_deg, higher_is_better=False),
            _row("normal_deg_worse", baseline_deg + 5 + rng.normal(0, 0.5, 24), baseline_deg, higher_is_better=False)]
    table = stats.compare_table(rows, n_boot=4000)
    verdicts = {r["name"]: r["verdict"] for r in table["rows"]}
    assert verdicts == {"psnr_better": "better", "psnr_worse": "worse", "normal_deg_better": "better",
                        "normal_deg_worse": "worse"}
    deg = table["rows"][2]
    assert deg["diff_mean"] == pytest.approx(deg["baseline_mean"] - deg["model_mean"]) and deg["diff_mean"] > 4
    assert all(r["reject"] and r["p_holm"] <= 0.05 for r in table["rows"])


def test_holm_makes_a_borderline_row_a_tie_in_a_big_table():
    # one modest gain, significant on its own at 5%, next to 14 identical-baseline rows: Holm over 15 rows needs
    # p <= 0.05 / 15, which it misses -> tie, while the uncorrected interval excludes 0
    noise = np.random.default_rng(0).normal(size=24)
    diff = 0.8 + (noise - noise.mean()) / noise.std()  # mean 0.8, sd 1 (p ~ 0.02 alone)
    alone = stats.paired_hierarchical_bootstrap(diff, GROUPS, n_boot=4000)
    assert 0.0033 < alone["p_two_sided"] <= 0.05 and alone["interval"][0] > 0
    model = np.zeros(24)
    rows = [_row("modest", diff, model)] + [_row(f"same_{i}", model, model) for i in range(14)]
    table = stats.compare_table(rows, n_boot=4000)
    modest = table["rows"][0]
    assert modest["interval"] == alone["interval"] and modest["verdict"] == "tie" and not modest["reject"]
    assert modest["corrected_interval"][0] <= 0 < modest["corrected_interval"][1]
    assert modest["p_holm"] == pytest.approx(min(1.0, 15 * alone["p_two_sided"]))


def test_deterministic_and_json_friendly():
    rng = np.random.default_rng(9)
    rows = [_row(f"m{i}", rng.normal(1, 1, 24), rng.normal(0, 1, 24), bool(i % 2)) for i in range(5)]
    first = stats.compare_table(rows, n_boot=2000, seed=3)
    assert stats.compare_table(rows, n_boot=2000, seed=3) == first
    assert stats.compare_table(rows, n_boot=2000, seed=4) != first
    assert json.loads(json.dumps(first)) == first  # plain floats/ints/lists, no numpy scalars
    for row in first["rows"]:
        for value in row.values():
            assert type(value) in (str, bool, int, float, list)
    diff = rng.normal(0, 1, 24)
    assert (stats.paired_hierarchical_bootstrap(diff, GROUPS, seed=1)
            == stats.paired_hierarchical_bootstrap(diff, GROUPS, seed=1))


def test_bad_input_is_refused_with_a_reason():
    good = np.ones(24)
    with pytest.raises(NeuralRenderError, match="one label per clip"):
        stats.paired_hierarchical_bootstrap(good, GROUPS[:-1])
    with pytest.raises(NeuralRenderError, match="non-finite"):
        stats.paired_hierarchical_bootstrap(np.r_[good[:-1], np.nan], GROUPS)
    with pytest.raises(NeuralRenderError, match="at least 2 clips"):
        stats.flat_bootstrap([])
    with pytest.raises(NeuralRenderError, match="24 and 23"):
        stats.compare_table([_row("x", good, good[:-1])])
    with pytest.raises(NeuralRenderError, match="'bad'.*non-finite"):
        stats.compare_table([_row("ok", good, good), _row("bad", np.r_[good[:-1], np.inf], good)])
    with pytest.raises(NeuralRenderError, match="non-empty"):
        stats.compare_table([])
    with pytest.raises(NeuralRenderError, match="duplicate"):
        stats.compare_table([_row("x", good, good), _row("x", good, good)])
    with pytest.raises(NeuralRenderError, match="n_boot"):  # too few resamples for a 0.05/15 interval
        stats.compare_table([_row(f"r{i}", good, good) for i in range(15)], n_boot=100)
    with pytest.raises(NeuralRenderError, match="alpha"):
        stats.flat_bootstrap(good, alpha=1.5)


def test_table_of_15_rows_is_fast():
    import time
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 12)  # 96 clips, 8 env maps
    rows = [_row(f"r{i}", rng.normal(0, 1, 96), rng.normal(0, 1, 96), groups=groups) for i in range(15)]
    start = time.perf_counter()
    stats.compare_table(rows, n_boot=10000)
    assert time.perf_counter() - start < 5.0  # ~0.3 s on one busy core; generous for shared CI machines
