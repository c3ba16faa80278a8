"""``neural-render synth``: render a synthetic dataset of path-traced clips with exact G-buffers (Mitsuba 3).

Writes ``--clips`` clip folders into ``--out`` atomically per clip; re-running the same command resumes (finished
clips are skipped, a killed run leaves no broken clip, the result equals an uninterrupted run). Prints total time,
the raw Mitsuba render time of the same frames, their ratio and frames/s at the end. Layout: synth/dataset.py.
"""

from __future__ import annotations

#: names of synth/splits.py SPLITS (kept here so that --help does not import the generator)
SPLIT_NAMES = ("train", "val", "test", "train2", "val2", "val2_table", "test2", "test2_table", "showcase_table")
HELP = "render a synthetic dataset: procedural PBR scenes -> path-traced RGB + exact G-buffers + flow (Mitsuba 3)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True,
                        help="output dataset folder: created, or resumed when a previous synth output with the same "
                             "arguments; any other non-empty folder is refused (exit 2), nothing in it is touched")
    parser.add_argument("--clips", type=int, default=4, help="number of clips (default 4)")
    parser.add_argument("--first-clip", type=int, default=0,
                        help="index of the first clip (default 0): a later slice of the same dataset, e.g. scenes a "
                             "model trained on clips 0..511 never saw")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--size", default="128x128", help="frame size: WxH, or N for NxN (default 128x128)")
    parser.add_argument("--spp", type=int, default=64, help="path-tracing samples per pixel (default 64)")
    parser.add_argument("--seed", type=int, default=None,
                        help="dataset seed: clip i is a function of (seed, i) (default: the --split's seed, else 0)")
    parser.add_argument("--split", choices=SPLIT_NAMES, default=None,
                        help="dataset split (neural_render/synth/splits.py): its env maps, shape and material "
                             "families, sky ranges and seed (train 1000, val 4000, test 7000); the generator-2 "
                             "splits train2 / val2 / val2_table / test2 / test2_table (seeds 11000, 41000, 42000, "
                             "71000, 72000) add scene styles (tables, rooms, backdrops), black backgrounds, textured "
                             "materials, more shape families and local lights; --envmaps and --seed override; "
                             "recorded in synth.json. Val splits are for every choice, test splits are scored once; "
                             "showcase_table (held-out families only) makes the docs/ contact sheet")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--preview", action="store_true", help="also write preview.png + rgb.mp4 per clip")
    parser.add_argument("--envmaps", default=None,
                        help="'train' / 'val' / 'test' / 'train_extra' (shipped maps of data/envmaps/split.json) or "
                             "'train_all' (train + train_extra), a folder of .hdr/.exr files or one such file "
                             "(default: the --split's maps, else train)")
    parser.add_argument("--sky", action="store_true", help="procedural sky (sun + gradient) instead of env maps")
    parser.add_argument("--meshes", nargs="*", default=[], metavar="FILE",
                        help="OBJ/GLB/PLY/... files that may replace procedural shapes")
    parser.add_argument("--max-depth", type=int, default=6, help="path length limit (default 6)")
    parser.add_argument("--min-objects", type=int, default=1, help="fewest objects per scene (default 1)")
    parser.add_argument("--max-objects", type=int, default=6, help="most objects per scene (default 6)")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate stored in the clips (default 12)")
    parser.add_argument("--env-height", type=int, default=128,
                        help="env maps taller than this are shrunk to HxH*2 (energy-preserving); sky resolution")
    parser.add_argument("--roughness-variant", type=int, default=0,
                        help="k > 0: the same scenes as variant 0 with every surface's roughness re-drawn (clips that "
                             "differ only in roughness)")
    parser.add_argument("--env-tilt", type=float, default=0.0,
                        help="max |pitch| and |roll| of the per-clip env rotation in degrees (yaw is uniform)")
    parser.add_argument("--spawn-prob", type=float, default=0.2,
                        help="probability that an object (other than the first) appears mid-clip")
    parser.add_argument("--proxy", action="store_true",
                        help="also store rendered/ per clip: the classical split-sum render of the exact G-buffers "
                             "(sim-to-real proxy benchmark); on a finished dataset only adds those folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import time

    start = time.perf_counter()
    from neural_render.errors import NeuralRenderError
    from neural_render.synth.dataset import SynthJob
    from neural_render.synth.envmap_files import resolve_envmaps
    from neural_render.synth.frame_size import parse_size
    from neural_render.synth.run import run_synth
    from neural_render.synth.scene import SynthConfig

    if args.frames < 1:
        raise NeuralRenderError(f"--frames must be >= 1, got {args.frames}")
    if args.spp < 1:
        raise NeuralRenderError(f"--spp must be >= 1, got {args.spp}")
    width, height = parse_size(args.size)
    config = SynthConfig(width=width, height=height, num_frames=args.frames, spp=args.spp, max_depth=args.max_depth,
                         fps=args.fps, min_objects=args.min_objects, max_objects=args.max_objects, sky=args.sky,
                         env_height=args.env_height, env_tilt_deg=args.env_tilt, spawn_prob=args.spawn_prob,
                         roughness_variant=args.roughness_variant)
    split = None
    if args.split is not None:
        from neural_render.synth.splits import get_split
        split = get_split(args.split)
        config = split.configure(config)
    config.validate()
    seed = args.seed if args.seed is not None else split.seed if split else 0
    envmaps = [] if args.sky else resolve_envmaps(args.envmaps or (split.envmaps if split else "train"))
    from neural_render.io.output import open_folder
    from neural_render.synth.dataset import SPEC_NAME

    open_folder(args.out, command="synth", inputs=[*envmaps, *args.meshes], also_owned_if=[SPEC_NAME])
    job = SynthJob(out=args.out, config=config, seed=seed, envmap_paths=envmaps, mesh_paths=list(args.meshes),
                   preview=args.preview, proxy=args.proxy)
    report = run_synth(job, args.clips, workers=args.workers, progress=not args.no_progress,
                       first_clip=args.first_clip)
    report.total_seconds = time.perf_counter() - start  # include argument checks and imports of this command
    print(report.summary())
    return 0
