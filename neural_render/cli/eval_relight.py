"""``neural-render eval relight --data DIR``: argument parsing for neural_render.evaluation.relight.

inverse -> target env map -> forward, against the path tracer under the target env map, beside the input returned
unchanged and the classical shader on the same estimated G-buffers (Holm-corrected hierarchical bootstrap).
"""

from __future__ import annotations

HELP = "evaluate relighting (inverse -> new env map -> forward) against path-traced ground truth under that env map"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_run_arguments

    parser.add_argument("--data", required=True, help="held-out synth dataset folder (env-map files, val or test)")
    parser.add_argument("--relight-data", default=None,
                        help="the same clips under the next env map of the dataset's list (default: DATA_relit; "
                             "rendered by the data engine when missing)")
    parser.add_argument("--model", default=None, help="forward pipeline folder (default: shipped forward_tiny)")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline folder (default: shipped)")
    add_eval_run_arguments(parser, domain="synthetic", domain_reason="the GT is synthetic")


def _check_relight_source(relight_data, data) -> None:
    """An existing relit folder must have been made from ``data`` (its relight.json), else its numbers mean nothing."""
    import json
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.relight import RELIGHT_SPEC

    try:
        source = json.loads((Path(relight_data) / RELIGHT_SPEC).read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        raise NeuralRenderError(f"not a relighting set made by eval relight (no readable {RELIGHT_SPEC})",
                                relight_data) from None
    if Path(source).resolve() != Path(data).resolve():
        raise NeuralRenderError(f"this relighting set was made from {source}, not from {data}", relight_data)


def run(args) -> int:
    from pathlib import Path

    from neural_render import hub
    from neural_render.data.clip_dataset import find_clips
    from neural_render.evaluation.common import dataset_split, find_eval_clips, log_test_scoring, write_json
    from neural_render.evaluation.relight import evaluate, format_report, make_relight_dataset
    from neural_render.io.output import check_output

    clips = find_eval_clips(args.data, args.max_clips)
    relight_data = Path(args.relight_data or str(Path(args.data).resolve()) + "_relit")
    if not relight_data.is_dir():
        check_output(relight_data, command="eval relight", inputs=[args.data])
        print(f"making relighting data {relight_data} from {args.data} (synth engine, next env map)", flush=True)
        make_relight_dataset(args.data, relight_data)
    _check_relight_source(relight_data, args.data)
    relit = {c.name: c for c in find_clips(relight_data)}
    forward_dir = hub.resolve_model(args.model, "forward")
    inverse_dir = hub.resolve_model(args.inverse_model, "inverse", "--inverse-model")
    for folder in (forward_dir, inverse_dir):  # logged before the numbers are seen
        if log_test_scoring(folder, args.data, "eval relight", args.json):
            print(f"(test split: this scoring is logged in {folder / 'test_scorings.jsonl'})")
    pipe = hub.load_relight(inverse_dir, forward_dir, args.device)
    result = {"data": str(args.data), "split": dataset_split(args.data), "relight_data": str(relight_data),
              "model": str(forward_dir), "inverse_model": str(inverse_dir),
              **evaluate(pipe, clips, relit, domain=args.domain, seed=args.seed)}
    print(format_report(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, 'eval relight')}")
    return 0
