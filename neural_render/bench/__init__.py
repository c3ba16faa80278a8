"""Benchmarks printing ratios measured in one run. ``neural-render bench <name>``.

Each benchmark module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int`` and is
registered here (later features add e.g. ``inverse``, ``all``). Modules import torch/diffusers lazily.
"""

from __future__ import annotations

#: benchmark name -> module path
BENCHMARKS: dict[str, str] = {
    "backbone": "neural_render.bench.backbone",
    "synth": "neural_render.bench.synth",
    "inverse": "neural_render.bench.inverse",
    "inverse-e2e": "neural_render.bench.inverse_e2e",
    "gpu-estimate": "neural_render.bench.gpu_estimate",
    "all": "neural_render.bench.all",
}
