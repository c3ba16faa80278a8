"""`neural-render bench inverse` runs and prints its ratios; the memory probe measures a streamed windowed call."""

import re

import pytest

from neural_render.bench.inverse import memory_probe
from neural_render.cli import EXIT_BAD_INPUT, main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_bench_prints_speed_ratio_and_skips_metrics_without_trained_models(capsys):
    assert main(["bench", "inverse", "--frames", "3", "--size", "8", "--steps", "1", "--repeats", "1",
                 "--window", "2", "--overlap", "1", "--memory-frames"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and "metrics: skipped" in out
    ratio = float(re.search(r"speed ratio ([0-9.]+)x", out).group(1))
    assert ratio > 1.0  # one joint run vs five per-pass runs of the same backbone
    assert main(["bench", "inverse", "--steps", "0"]) == EXIT_BAD_INPUT


def test_memory_probe_reports_working_memory_and_latent_bytes():
    short = memory_probe(None, "per_pass", 2, 8, 1, 2, 1)
    long = memory_probe(None, "per_pass", 8, 8, 1, 2, 1)
    assert short["working"] >= 0 and long["process_peak"] > long["working"]
    assert long["latent_bytes"] == 4 * short["latent_bytes"] and long["chunks"] > short["chunks"]
