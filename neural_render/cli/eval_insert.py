"""``neural-render eval insert --data DIR``: argument parsing for neural_render.evaluation.insert.

DATA is made by ``scripts/make_insert_eval_data.py``. Every method inserts the object into the scene video and is
scored against the path tracer WITH the object, in the object / around / shadow / frame regions; ``--json`` writes
every number.
"""

from __future__ import annotations

HELP = "evaluate object insertion (cache injection vs none vs classical paste vs unchanged input) against path tracing"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_eval_data_arguments, add_eval_run_arguments

    add_eval_data_arguments(parser, "folder made by scripts/make_insert_eval_data.py",
                            "cache-injection forward model (default: shipped)")
    parser.add_argument("--base-model", default=None, help="plain forward model (default: shipped forward_tiny)")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline (default: shipped inverse_tiny)")
    parser.add_argument("--gbuffers", choices=("inverse", "clip"), default="inverse",
                        help="scene G-buffers from the inverse model (default) or the clips' exact passes")
    parser.add_argument("--strength", type=float, default=None, help="injection strength (default: the model's)")
    parser.add_argument("--received-from", choices=("support", "lifted"), default="support",
                        help="injections with received shadows: what shadows the object, only the plane it stands on "
                             "(default: robust to estimated depth) or the scene lifted from its G-buffer")
    parser.add_argument("--ring", type=int, default=6, help="width in pixels of the 'around' region")
    add_eval_run_arguments(parser, seed_help="sampling seed (default 0)", domain="real",
                           domain_reason="inverse-rendered input")


def run(args) -> int:
    from pathlib import Path

    from neural_render import hub
    from neural_render.data.clip_dataset import find_clips
    from neural_render.devices import resolve_device
    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.common import dataset_split, log_test_scoring, write_json
    from neural_render.evaluation.insert import evaluate, format_report

    data = Path(args.data)
    clips = find_clips(data / "scene") if (data / "scene").is_dir() else []
    if not clips:
        raise NeuralRenderError("no scene/clip_* folders (make them with scripts/make_insert_eval_data.py)", data)
    if args.max_clips is not None and args.max_clips < 1:
        raise NeuralRenderError(f"--max-clips must be >= 1, got {args.max_clips}")
    clips = clips[: args.max_clips] if args.max_clips else clips
    device = resolve_device(args.device)
    folder, note = hub.resolve_cache_forward(args.model)
    model = hub.load_cache_forward(folder, device)
    if note or model.injection is None:
        raise NeuralRenderError("eval insert needs a model with a cache injection (--model)", folder)
    base_folder = hub.resolve_model(args.base_model, "forward", option="--base-model")
    base = hub.load_cache_forward(base_folder, device)
    inverse_folder = None
    if args.gbuffers == "inverse":
        inverse_folder = hub.resolve_model(args.inverse_model, "inverse", "--inverse-model")
    inverse = hub.load_inverse(inverse_folder, device) if inverse_folder is not None else None
    used = [folder, base_folder] + ([inverse_folder] if inverse is not None else [])
    for path in dict.fromkeys(used):  # logged before the numbers are seen
        if log_test_scoring(path, data / "scene", "eval insert", args.json):
            print(f"(test split: this scoring is logged in {path / 'test_scorings.jsonl'})")
    result = {"data": str(data), "split": dataset_split(data / "scene"), "model": str(folder),
              "base_model": str(base_folder), "gbuffers": args.gbuffers, "ring": args.ring, "strength": args.strength,
              "received_from": args.received_from,
              **evaluate(data, clips, model, base, inverse, strength=args.strength, received_from=args.received_from,
                         ring=args.ring, seed=args.seed, domain=args.domain)}
    print(format_report(result))
    if args.json:
        print(f"wrote {write_json(args.json, result, 'eval insert')}")
    return 0
