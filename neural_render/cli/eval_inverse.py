"""``neural-render eval inverse --data DIR --model DIR``: argument parsing for neural_render.evaluation.inverse.

Prints the table (model, input / pixel-filtered-input / constant baselines, Holm-corrected hierarchical-bootstrap
comparisons); ``--json`` writes every number. A scoring of a TEST split is logged beside the model
(``test_scorings.jsonl``).
"""

from __future__ import annotations

from neural_render.pipelines.defaults import INVERSE_OVERLAP, INVERSE_WINDOW

HELP = "evaluate an inverse rendering model on held-out synthetic clips beside the strongest baselines (table + JSON)"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_data_arguments

    add_eval_data_arguments(parser, "held-out dataset folder (clip folders with G-buffers)",
                            "inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--long-data", default=None, help="folder of long clips for the window-boundary test")
    parser.add_argument("--train-data", default=None,
                        help="training dataset to compute the baseline means from (default: train_stats.json in the "
                             "model folder)")
    parser.add_argument("--json", default=None, help="write all numbers to this JSON file")
    parser.add_argument("--window", type=int, default=INVERSE_WINDOW,
                        help=f"frames per window (default {INVERSE_WINDOW})")
    parser.add_argument("--overlap", type=int, default=INVERSE_OVERLAP,
                        help=f"frames shared by neighbouring windows (default {INVERSE_OVERLAP})")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default 0)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips of --data only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def run(args) -> int:
    from neural_render import hub
    from neural_render.evaluation.common import log_test_scoring, torch_threads, write_json
    from neural_render.evaluation.inverse import evaluate, format_report

    model = hub.resolve_model(args.model, "inverse")
    if log_test_scoring(model, args.data, "eval inverse", args.json):  # logged before the numbers are seen
        print(f"(test split: this scoring is logged in {model / 'test_scorings.jsonl'})")
    with torch_threads(args.threads):
        result = evaluate(model, args.data, window=args.window, overlap=args.overlap, steps=args.steps,
                          seed=args.seed, max_clips=args.max_clips, long_data=args.long_data,
                          train_data=args.train_data)
    print(format_report(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, 'eval inverse')}")
    return 0
