"""FLOP/memory model: exact on a layer we can count by hand; the command runs on full-size configs (shapes only)."""

import torch

from neural_render.bench.gpu_estimate import trace
from neural_render.cli import main


def test_trace_counts_linear_flops_and_live_bytes():
    layer = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    x = torch.randn(10, 64)
    flops, peak = trace(layer, (x,), {})
    assert flops == 2 * 10 * 64 * 32 + 2 * 10 * 32 * 16
    assert peak >= 10 * 32 * 4  # the first activation is alive at some point
    assert peak <= 10 * (32 + 32 + 16) * 4 + 4096  # never more than all outputs at once


def test_command_prints_a_table_for_full_size_svd(capsys):
    torch.set_num_threads(1)
    assert main(["bench", "gpu-estimate", "--size", "64", "--frames", "2", "--backbones", "svd"]) == 0
    out = capsys.readouterr().out
    assert "SVD-xt UNet" in out and "| inverse |" in out and "DiffusionRenderer" in out
    row = [line for line in out.splitlines() if line.startswith("| SVD-xt UNet | inverse")][0]
    params = float(row.split("|")[4])
    assert 1.4 < params < 1.6  # the published SVD-xt UNet has ~1.5 B parameters
