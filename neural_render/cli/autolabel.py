"""``neural-render autolabel INPUT_DIR --out DIR``: G-buffers for every video of a folder, sharded and resumable.

Inputs (entries of INPUT_DIR, sorted by name, hidden ones skipped): video files (.mp4 .mov .mkv .avi .webm .m4v),
folders of PNG/JPG frames, clip folders (meta.json). Clip id = file stem or folder name (the full file name when two
inputs share a stem). Output per clip: ``DIR/<id>/``, exactly what ``neural-render inverse`` writes, renamed into
place when complete. Then ``DIR/.autolabel/status/<id>.json`` records ``done`` or ``failed`` + reason (a failing
clip never stops the run), and ``DIR/manifest.json`` lists every input with its status (``pending`` when not yet
processed). ``DIR/autolabel.json`` fixes the model and settings: a re-run with other ones is refused.

Resumable: a clip whose status is ``done`` and whose folder is complete is skipped; failed clips are retried; a killed
run leaves at most hidden temporaries (removed by the next run of the same shard) and never a broken clip, and the
re-run's outputs equal an uninterrupted run's (sampling is seeded, writes are deterministic).

Sharding: clip i (in sorted order) belongs to rank ``i % world_size``. Rank and world size come from Lightning when
it runs several processes (``--devices N --num-nodes M``: DDP predict, one process per device, launched by
Lightning), else from the ``RANK`` / ``WORLD_SIZE`` environment variables (independent jobs, e.g. a cluster array),
else 0 / 1. On CPU the default is one process. Exit code 0 when every clip of the shard is done, 1 when some failed.
The work is :mod:`neural_render.autolabel` (inputs, state, predict).
"""

from __future__ import annotations

HELP = "auto-label a folder of videos with G-buffers: sharded over GPUs/nodes (Lightning DDP predict), resumable"


def add_arguments(parser) -> None:
    from neural_render.cli.common_args import add_resumable_out_argument
    from neural_render.cli.inverse import add_model_arguments

    add_resumable_out_argument(parser, "input_dir", "folder of videos, frame folders and/or clip folders", "autolabel",
                               "one clip folder per input + manifest.json")
    add_model_arguments(parser)
    parser.add_argument("--devices", type=int, default=1, help="processes/devices per node (default 1)")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes (default 1)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")
    parser.add_argument("--strategy", default="ddp", help="Lightning strategy with several processes (default ddp)")


def print_line(line: str) -> None:
    """One line per clip on stdout, flushed (several processes share the terminal)."""
    print(line, flush=True)


def run(args) -> int:
    import sys
    from pathlib import Path

    from neural_render.cli.inverse import check_settings, settings_from_args
    from neural_render.errors import NeuralRenderError

    check_settings(args)
    if args.devices < 1 or args.num_nodes < 1:
        raise NeuralRenderError(f"--devices and --num-nodes must be >= 1, got {args.devices}, {args.num_nodes}")
    from neural_render.autolabel.predict import autolabel_folder

    r = autolabel_folder(args.input_dir, args.out, settings_from_args(args), model=args.model, devices=args.devices,
                         num_nodes=args.num_nodes, accelerator=args.accelerator, strategy=args.strategy,
                         report=print_line)
    if r.counts is not None:
        c = r.counts
        print(f"{Path(args.out)}: {c['done']} done, {c['failed']} failed, {c['pending']} pending of {r.inputs} "
              f"(this shard: rank {r.rank} of {r.world}, {r.clips} clips)")
    sys.stdout.flush()
    return 1 if r.failed else 0
