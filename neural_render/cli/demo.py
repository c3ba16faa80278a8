"""``neural-render demo``: the main job on a fresh install, on 2 CPU cores, with no download (README's first command).

1. reads the shipped clip ``data/clips/demo_lebombo`` (16 path-traced frames of 128 x 96, lit by the TEST env map
   lebombo; made by scripts/make_demo_clip.py), or ``--clip real_box`` / ``real_pedestrians`` (24 frames of REAL
   footage, run at 64 x 48 with inverse_v2: the clip's demo settings, neural_render/demo/run.py), or ``--clip DIR``;
2. estimates its G-buffers with the shipped inverse model ``data/models/inverse_tiny`` (``--inverse-model DIR``;
   a clip's demo settings may name another shipped one);
3. relights them under two shipped env maps (``--envmaps A B``) with the clip's moving cameras;
4. turns one object into polished gold (object ids of the clip), under the clip's own light;
5. inserts a glossy red sphere, under the clip's own light;

with the neural forward model ``data/models/forward_tiny`` when it is there (``--model DIR``) or else the classical
split-sum shader (``--classical`` forces it); the summary and the contact sheet say which. Writes into ``--out``
(created if needed; other files in it are left alone; every file is written beside it first and moved in once all
are done): input.mp4, gbuffers.mp4 (basecolor | normal | depth | roughness |
metallic), relit_<A>.mp4, relit_<B>.mp4, edit.mp4, insert.mp4, contact_sheet.png (one labelled row per video) and
summary.json; prints where they are and the wall time. The work is :mod:`neural_render.demo` (models, run,
outputs).
"""

from __future__ import annotations

HELP = ("the demo: shipped clip -> inverse rendering -> relight under two env maps, edit a material, insert an "
        "object; MP4s + contact sheet")

DEFAULT_CLIP = "demo_lebombo"
REAL_CLIPS = ("real_box", "real_pedestrians")  # shipped real footage (data/clips/CREDITS.md)
DEFAULT_ENVMAPS = ("kiara_1_dawn", "st_fagans_interior")
INVERSE_MODEL = "models/inverse_tiny"  # inside the shipped data folder
FORWARD_MODEL = "models/forward_tiny"
CACHE_MODEL = "models/forward_cache_tiny"  # the shipped forward model + a trained 3D-cache injection (insertion)


def add_arguments(parser) -> None:
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output folder", required=False, default="demo_out")
    parser.add_argument("--clip", default=DEFAULT_CLIP,
                        help=f"shipped clip name ({DEFAULT_CLIP}: synthetic; {', '.join(REAL_CLIPS)}: real "
                             f"footage, run at 64x48 with inverse_v2) or clip folder (default {DEFAULT_CLIP})")
    parser.add_argument("--frames", type=int, default=None, help="use the first N frames (default: all)")
    parser.add_argument("--envmaps", nargs=2, default=list(DEFAULT_ENVMAPS), metavar=("A", "B"),
                        help="two env maps to relight under: shipped names (data/envmaps) or .hdr/.exr files")
    parser.add_argument("--inverse-model", default=None,
                        help=f"inverse pipeline folder (default: shipped data/{INVERSE_MODEL})")
    parser.add_argument("--model", default=None,
                        help=f"forward pipeline folder (default: shipped data/{FORWARD_MODEL} when present)")
    parser.add_argument("--classical", action="store_true", help="render with the split-sum shader, not a model")
    parser.add_argument("--no-cache", action="store_true",
                        help=f"insert without the 3D-cache injection (default: with data/{CACHE_MODEL} when the "
                             "shipped forward model renders)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")


def run(args) -> int:
    import time
    from pathlib import Path

    from neural_render.data_assets import clip_path
    from neural_render.demo.models import cache_folder, forward_folder, inverse_folder
    from neural_render.demo.outputs import env_label, run_demo_into
    from neural_render.demo.run import EDIT_LABEL, INSERT_LABEL, load_demo_clip
    from neural_render.errors import NeuralRenderError
    from neural_render.io.envmap_input import load_env
    from neural_render.io.output import claim_output

    start = time.perf_counter()
    if args.frames is not None and args.frames < 2:
        raise NeuralRenderError(f"--frames must be >= 2, got {args.frames}")
    names = [env_label(n) for n in args.envmaps]
    if names[0] == names[1]:
        raise NeuralRenderError(f"--envmaps needs two different env maps, got {args.envmaps[0]} twice")
    envs = {name: load_env(raw) for name, raw in zip(names, args.envmaps)}  # every input checked before work
    clip = load_demo_clip(clip_path(args.clip), args.frames)
    inverse_dir = inverse_folder(args.inverse_model or clip.settings.get("inverse_model"))
    forward_dir = forward_folder(args.model, args.classical)
    cache_dir = cache_folder(args.no_cache, args.model, forward_dir)
    out = Path(args.out)
    with claim_output(out, command="demo", kind="dir", overwrite=args.overwrite,
                      inputs=[clip_path(args.clip), inverse_dir, forward_dir, cache_dir]):
        result, summary, written = run_demo_into(out, clip, clip_path(args.clip), names, envs, inverse_dir,
                                                 forward_dir, cache_dir, args.seed, start)
    t, h, w = clip.video.shape[1], clip.video.shape[3], clip.video.shape[4]
    print(f"demo: {clip.name}, {t} frames of {w}x{h}; G-buffers by the inverse model {inverse_dir}; "
          f"rendered by the {result.renderer}")
    print(f"  relit under {names[0]} and {names[1]}; edit: {result.edit_target} -> {EDIT_LABEL}; "
          f"insert: {INSERT_LABEL}" + (" (3D-cache injection)" if result.insert_renderer else ""))
    for note in result.notes:
        print(f"  note: {note}")
    print(f"wrote {len(written)} files into {out.resolve()}:")
    for name in written:
        print(f"  {out / name}")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    if args.clip == DEFAULT_CLIP:
        print(f"real footage: neural-render demo --clip {REAL_CLIPS[0]} (or {', '.join(REAL_CLIPS[1:])})")
    return 0
