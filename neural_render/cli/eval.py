"""``neural-render eval <what>``: evaluations registered in :data:`EVALUATIONS` (one module per sub-command).

    neural-render eval inverse --data HELDOUT --model DIR [--long-data DIR] [--json out.json] [--window 16 --overlap 8]

Each evaluation module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int`` and imports
heavy libraries lazily (``--help`` stays fast). Later features add theirs (forward, insert, sim2real) here.
"""

from __future__ import annotations

import importlib

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
    sub = parser.add_subparsers(dest="evaluation", metavar="EVALUATION")
    for name, path in EVALUATIONS.items():
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing --json file that this evaluation did not write (refused otherwise)")


def run(args) -> int:
    from neural_render.errors import NeuralRenderError

    name = getattr(args, "evaluation", None)
    if not name:
        raise NeuralRenderError(f"name an evaluation: one of {sorted(EVALUATIONS)}")
    if getattr(args, "json", None):  # checked before any model work; the file is written atomically at the end
        from neural_render.io.output import check_output

        check_output(args.json, command=f"eval {name}", kind="file", overwrite=args.overwrite,
                     inputs=[getattr(args, name, None) for name in ("data", "long_data", "train_data", "relight_data")])
    return int(importlib.import_module(EVALUATIONS[name]).run(args) or 0)
