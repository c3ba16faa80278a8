"""``neural-render eval forward --data DIR --model DIR [--real [--lora-model DIR]]``: argument parsing for
neural_render.evaluation.forward and neural_render.evaluation.forward_real.

Renders each clip's exact G-buffers under its env map with the neural model and the classical baselines (plain and
pixel-filtered split-sum), scored against the path tracer (PSNR / SSIM, Holm-corrected hierarchical bootstrap);
``--json`` writes every number. ``--real``: ``--data`` is a folder of auto-labelled REAL clips; each is re-rendered
from its G-buffers with the lighting absent (e_real and e_synthetic; ``--lora-model``: a second forward model, e.g.
a real-data LoRA) and scored against the real frames (bootstrap over sources). Relighting has its own evaluation:
``neural-render eval relight``.
"""

from __future__ import annotations

HELP = "evaluate the forward renderer on exact G-buffers against path-traced ground truth (or --real footage)"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_data_arguments, add_eval_run_arguments

    add_eval_data_arguments(parser, "held-out synth dataset folder (val or test split); with --real a folder of "
                            "auto-labelled real clips", "forward pipeline folder (default: shipped forward_tiny)")
    add_eval_run_arguments(parser, domain="synthetic", domain_reason="the GT is synthetic; --real renders both")
    parser.add_argument("--real", action="store_true",
                        help="--data holds auto-labelled real clips (`neural-render autolabel`): re-render them from "
                             "their G-buffers with no lighting condition and score against the real frames")
    parser.add_argument("--lora-model", default=None,
                        help="with --real: a second forward pipeline folder (e.g. with a real-data lora/ adapter), "
                             "rendered at its default domain as the 'real LoRA' row")
    parser.add_argument("--reference-model", default=None,
                        help="without --real: a second forward pipeline folder (e.g. the model a fine-tune started "
                             "from) rendered beside the model and compared with it (paired, with an interval)")


def run(args) -> int:
    from pathlib import Path

    from neural_render import hub
    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation import forward, forward_real
    from neural_render.evaluation.common import dataset_split, find_eval_clips, log_test_scoring, write_json

    if args.lora_model and not args.real:
        raise NeuralRenderError("--lora-model is only for --real")
    if args.reference_model and args.real:
        raise NeuralRenderError("--reference-model is not for --real (use --lora-model there)")
    clips = find_eval_clips(args.data, args.max_clips)
    if args.real:
        forward_real.check_real_clips(clips)  # before any model work
    folder = hub.resolve_model(args.model, "forward")
    lora = hub.resolve_model(args.lora_model, "forward", "--lora-model") if args.lora_model else None
    pipe = hub.load_forward(folder, args.device)
    lora_pipe = hub.load_forward(lora, args.device, "--lora-model") if lora else None
    reference = (hub.resolve_model(args.reference_model, "forward", "--reference-model") if args.reference_model
                 else None)
    reference_pipe = hub.load_forward(reference, args.device, "--reference-model") if reference else None
    command = "eval forward --real" if args.real else "eval forward"
    if any([log_test_scoring(f, args.data, command, args.json) for f in (folder, lora) if f]):  # before the numbers
        print("(test split: this scoring is logged beside the model(s) in test_scorings.jsonl)")
    result = {"data": str(args.data), "split": dataset_split(args.data), "model": str(folder),
              "model_info": pipe.forward_config.get("info", {})}
    if lora_pipe is not None:
        result.update(lora_model=str(lora), lora_adapters=lora_pipe.lora_names(),
                      lora_model_info=(lora_pipe.forward_config or {}).get("info", {}))
    if args.real:
        result.update(forward_real.evaluate_real(pipe, clips, lora_pipe, seed=args.seed))
    else:
        if reference is not None:
            result["reference_model"] = str(reference)
        result.update(forward.evaluate(pipe, clips, domain=args.domain, seed=args.seed, reference=reference_pipe,
                                       reference_name=f"reference {Path(reference).name}" if reference else ""))
    print((forward_real if args.real else forward).format_report(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, 'eval forward')}")
    return 0
