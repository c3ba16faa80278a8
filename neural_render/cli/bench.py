"""``neural-render bench <benchmark>``: benchmarks registered in :data:`neural_render.bench.BENCHMARKS`."""

from __future__ import annotations

HELP = "run a benchmark (backbone, ...) and print its measured ratios"


def add_arguments(parser) -> None:
    from neural_render.bench import BENCHMARKS
    from neural_render.cli.common_args import add_subcommands

    add_subcommands(parser, "benchmark", "BENCHMARK", BENCHMARKS)


def run(args) -> int:
    from neural_render.bench import BENCHMARKS
    from neural_render.cli.common_args import chosen_subcommand, run_subcommand

    return run_subcommand(BENCHMARKS, chosen_subcommand(args, "benchmark", BENCHMARKS, "a benchmark"), args)
