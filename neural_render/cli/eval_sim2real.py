"""``neural-render eval sim2real --data HELDOUT --model DIR [--propagation DIR]``: argument parsing for
neural_render.evaluation.sim2real (the sim-to-real proxy benchmark; its module docstring has the details)."""

from __future__ import annotations

HELP = "evaluate sim-to-real translation on held-out proxy clips: PSNR/SSIM, edge F1, warp error, spawned objects"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_data_arguments, add_eval_run_arguments

    add_eval_data_arguments(parser, "held-out `synth --proxy` dataset folder (or one clip)",
                            "sim2real model folder or IC-LoRA folder", model_required=True)
    parser.add_argument("--base", default=None, help="base pipeline folder for a bare IC-LoRA folder")
    parser.add_argument("--propagation", default=None, help="anchor propagation model folder (optional)")
    parser.add_argument("--enhancer", default="path-traced", help="anchor enhancer for the propagation pipeline")
    parser.add_argument("--strength", type=float, default=1.0, help="IC-LoRA strength (default 1)")
    parser.add_argument("--window", type=int, default=None, help="IC-LoRA latent frames per window")
    parser.add_argument("--overlap", type=int, default=None, help="IC-LoRA window overlap (latent frames)")
    add_eval_run_arguments(parser, seed_help="sampling seed (default 0)", device=False)


def run(args) -> int:
    import time

    from neural_render import hub
    from neural_render.evaluation.common import (
        dataset_split,
        find_eval_clips,
        log_test_scoring,
        verdict_cell,
        write_json,
    )
    from neural_render.evaluation.sim2real import evaluate, format_table
    from neural_render.pipelines.sim2real_anchors import make_enhancer

    start = time.perf_counter()
    clips = find_eval_clips(args.data, args.max_clips)
    model = hub.load_sim2real(args.model, args.base)
    propagation = hub.load_propagation(args.propagation, option="--propagation") if args.propagation else None
    enhancer = make_enhancer(args.enhancer, seed=args.seed) if propagation is not None else None
    for path in (args.model, args.base, args.propagation):  # logged before the numbers are seen
        if path and log_test_scoring(path, args.data, "eval sim2real", args.json):
            print(f"(test split: this scoring is logged in {path}/test_scorings.jsonl)")
    result = evaluate(model, clips, propagation=propagation, enhancer=enhancer, strength=args.strength,
                      window=args.window, overlap=args.overlap, seed=args.seed)
    print(f"sim2real eval: {len(clips)} clip(s) of {args.data} (split: {dataset_split(args.data) or 'unknown'}); "
          f"model {args.model} (trained steps {model.info.get('global_step', 0)}); propagation "
          f"{args.propagation or '-'} (enhancer {enhancer.name if enhancer else '-'}); "
          f"{time.perf_counter() - start:.1f} s")
    print(format_table(result["summary"]))
    for row in result["comparison"]["rows"]:
        print(f"  {row['name']:60s} {verdict_cell(row)}")
    if args.json:
        record = {"data": args.data, "split": dataset_split(args.data), "model": args.model,
                  "propagation": args.propagation, "enhancer": enhancer.name if enhancer else None, **result}
        print(f"wrote {write_json(args.json, record, 'eval sim2real')}")
    return 0
