"""``neural-render bench <benchmark>``: benchmarks registered in :data:`neural_render.bench.BENCHMARKS`."""

from __future__ import annotations

import importlib

HELP = "run a benchmark (backbone, ...) and print its measured ratios"


def add_arguments(parser) -> None:
    from neural_render.bench import BENCHMARKS

    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, path in BENCHMARKS.items():
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)


def run(args) -> int:
    from neural_render.bench import BENCHMARKS
    from neural_render.errors import NeuralRenderError

    if not getattr(args, "benchmark", None):
        raise NeuralRenderError(f"name a benchmark: one of {sorted(BENCHMARKS)}")
    return int(importlib.import_module(BENCHMARKS[args.benchmark]).run(args) or 0)
