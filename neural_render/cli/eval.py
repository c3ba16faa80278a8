"""``neural-render eval <what>``: evaluations registered in :data:`EVALUATIONS` (one module per sub-command).

    neural-render eval inverse --data HELDOUT --model DIR [--long-data DIR] [--json out.json] [--window 16 --overlap 8]

Each evaluation module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int`` and imports
heavy libraries lazily (``--help`` stays fast). Later features add theirs (forward, insert, sim2real) here.
"""

from __future__ import annotations

HELP = "evaluate a trained model on held-out data (inverse, ...): prints a table beside trivial baselines, --json"

#: sub-command -> module path
EVALUATIONS: dict[str, str] = {
    "inverse": "neural_render.cli.eval_inverse",
    "forward": "neural_render.cli.eval_forward",
    "relight": "neural_render.cli.eval_relight",
    "sim2real": "neural_render.cli.eval_sim2real",
    "insert": "neural_render.cli.eval_insert",
}


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_subcommands

    for p in add_subcommands(parser, "evaluation", "EVALUATION", EVALUATIONS):
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing --json file that this evaluation did not write (refused otherwise)")


def run(args) -> int:
    from neural_render.cli.common_args import chosen_subcommand, run_subcommand

    name = chosen_subcommand(args, "evaluation", EVALUATIONS, "an evaluation")
    if getattr(args, "json", None):  # checked before any model work; the file is written atomically at the end
        from neural_render.io.output import check_output

        check_output(args.json, command=f"eval {name}", kind="file", overwrite=args.overwrite,
                     inputs=[getattr(args, name, None) for name in ("data", "long_data", "train_data", "relight_data")])
    return run_subcommand(EVALUATIONS, name, args)
