"""``neural-render eval forward --data DIR --model DIR``: argument parsing for neural_render.evaluation.forward.

Renders each clip's exact G-buffers under its env map with the neural model and the classical baselines (plain and
pixel-filtered split-sum), scored against the path tracer (PSNR / SSIM, Holm-corrected hierarchical bootstrap);
``--json`` writes every number. Relighting has its own evaluation: ``neural-render eval relight``.
"""

from __future__ import annotations

HELP = "evaluate the forward renderer on exact G-buffers against path-traced ground truth: PSNR / SSIM"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_data_arguments, add_eval_run_arguments

    add_eval_data_arguments(parser, "held-out synth dataset folder (val or test split)",
                            "forward pipeline folder (default: shipped forward_tiny)")
    add_eval_run_arguments(parser, domain="synthetic", domain_reason="the GT is synthetic")


def run(args) -> int:
    from neural_render import hub
    from neural_render.evaluation.common import dataset_split, find_eval_clips, log_test_scoring, write_json
    from neural_render.evaluation.forward import evaluate, format_report

    clips = find_eval_clips(args.data, args.max_clips)
    folder = hub.resolve_model(args.model, "forward")
    pipe = hub.load_forward(folder, args.device)
    if log_test_scoring(folder, args.data, "eval forward", args.json):  # before the numbers are seen
        print("(test split: this scoring is logged beside the model in test_scorings.jsonl)")
    result = {"data": str(args.data), "split": dataset_split(args.data), "model": str(folder),
              "model_info": pipe.forward_config.get("info", {}),
              **evaluate(pipe, clips, domain=args.domain, seed=args.seed)}
    print(format_report(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, 'eval forward')}")
    return 0
