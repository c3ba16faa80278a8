"""Model-vs-baseline comparisons of the inverse eval: baseline_relative_error (the checkpoint-selection score of
scripts/train_inverse_tiny.py) and paired_comparison (the "clearly" column of `eval inverse`)."""

import pytest

from neural_render.errors import NeuralRenderError
from neural_render.metrics.inverse import baseline_relative_error

BASE = {"normal_mean_deg": 60.0, "albedo_si_psnr_db": 20.0, "roughness_rmse": 0.2, "metallic_rmse": 0.2,
        "depth_absrel": 0.5}


def test_equal_to_baseline_scores_one():
    assert baseline_relative_error(dict(BASE), BASE) == pytest.approx(1.0)


def test_each_pass_counts_a_fifth():
    # halving one error metric, or +10*log10(2) dB of albedo (half the MSE), lowers the score by 0.1
    for key in ("normal_mean_deg", "roughness_rmse", "metallic_rmse", "depth_absrel"):
        assert baseline_relative_error(dict(BASE, **{key: BASE[key] / 2}), BASE) == pytest.approx(0.9)
    better_albedo = dict(BASE, albedo_si_psnr_db=20.0 + 3.0102999566)
    assert baseline_relative_error(better_albedo, BASE) == pytest.approx(0.9)
    worse = dict(BASE, metallic_rmse=0.4)
    assert baseline_relative_error(worse, BASE) == pytest.approx(1.2)


def test_missing_metric_is_an_error():
    partial = {k: v for k, v in BASE.items() if k != "depth_absrel"}
    with pytest.raises(NeuralRenderError, match="depth_absrel"):
        baseline_relative_error(partial, BASE)


def test_paired_comparison_verdicts():
    from neural_render.metrics.inverse import paired_comparison

    base = [0.2 + 0.01 * i for i in range(20)]
    clear = paired_comparison([b - 0.05 for b in base], base, higher_is_better=False)
    assert clear["verdict"] == "better" and clear["wins"] == 20 and clear["mean_improvement"] == pytest.approx(0.05)
    # +-0.05 alternating around the baseline: mean 0, the interval straddles it
    noisy = paired_comparison([b + (0.05 if i % 2 else -0.05) for i, b in enumerate(base)], base, False)
    assert noisy["verdict"] == "tie" and noisy["ci95"][0] < 0 < noisy["ci95"][1] and noisy["wins"] == 10
    # higher is better (PSNR): a model 1 dB below on every clip is worse
    assert paired_comparison([19.0] * 5, [20.0] * 5, higher_is_better=True)["verdict"] == "worse"
    # non-finite pairs are dropped (oracle albedo: +inf dB); one pair left is too few to judge
    few = paired_comparison([float("inf"), 21.0], [20.0, 20.0], True)
    assert few["clips"] == 1 and few["verdict"] == "n/a"
    with pytest.raises(NeuralRenderError, match="equal lengths"):
        paired_comparison([1.0], [1.0, 2.0], True)
