"""``neural-render sim2real-data INPUT --out DIR --model PROPAGATION_DIR``: (rendered, realistic) pairs by anchor
propagation (RealMaster; pipelines/sim2real_data.py).

INPUT: a folder of clip folders (or one clip folder) whose rgb is the rendered video, with G-buffers / env map when
the enhancer needs them; ``synth --proxy`` datasets work as is (their rendered side is ``rendered/``). For each clip
the enhancer makes the anchor frames realistic (first and last frame of every segment of the model's length),
the propagation model fills the frames between them following the rendered clip's edges (or depth: the model's
``conditioning``), and ``DIR/pair_<clip>/`` is written atomically (realistic clip + ``rendered/``); re-running skips
finished pairs. ``--enhancer``: ``auto`` (the shipped forward renderer if present, else the path-traced proxy
anchors), ``forward[:DIR]``, ``path-traced``, ``img2img:DIR`` (local diffusers folder), ``identity``.
"""

from __future__ import annotations

HELP = "make (rendered, realistic) clip pairs by anchor propagation: enhanced anchors + edge-conditioned propagation"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_resumable_out_argument

    add_resumable_out_argument(parser, "input", "folder of rendered clip folders (or one clip folder)", "sim2real-data",
                               "pair folders")
    parser.add_argument("--model", required=True, help="anchor propagation model folder (PropagationTask export)")
    parser.add_argument("--enhancer", default="auto",
                        help="anchor enhancer: auto | forward[:DIR] | path-traced | img2img:DIR | identity")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (clip k uses seed + k)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from neural_render.errors import NeuralRenderError

    if args.limit is not None and args.limit < 1:
        raise NeuralRenderError(f"--limit must be >= 1, got {args.limit}")
    from neural_render.io.output import claim_output, open_folder

    with claim_output(args.out, command="sim2real-data", kind="dir", inputs=[args.input, args.model]):
        open_folder(args.out, command="sim2real-data", inputs=[args.input, args.model])
        return _make_pairs(args)


def _make_pairs(args) -> int:
    import logging

    from neural_render import hub
    from neural_render.pipelines.sim2real_anchors import make_enhancer
    from neural_render.pipelines.sim2real_data import make_pairs

    pipe = hub.load_propagation(args.model)
    if not pipe.is_trained:
        logging.getLogger(__name__).warning("sim2real-data: the propagation model was never trained (global_step 0)")
    enhancer = make_enhancer(args.enhancer, seed=args.seed)
    report = make_pairs(args.input, args.out, pipe, enhancer, seed=args.seed, limit=args.limit,
                        progress=not args.no_progress)
    print(f"sim2real-data: {report['written']} pair(s) written, {report['skipped']} already complete, in "
          f"{report['seconds']:.1f} s -> {args.out}  (enhancer {enhancer.name}, conditioning {pipe.conditioning})")
    return 0
