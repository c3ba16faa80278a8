"""``neural-render demo``: the main job on a fresh install, on 2 CPU cores, with no download (README's first command).

1. reads the shipped clip ``data/clips/demo_lebombo`` (16 path-traced frames of 128 x 96, lit by the TEST env map
   lebombo; made by scripts/make_demo_clip.py) or ``--clip DIR``;
2. estimates its G-buffers with the shipped inverse model ``data/models/inverse_tiny`` (``--inverse-model DIR``);
3. relights them under two shipped env maps (``--envmaps A B``) with the clip's moving cameras;
4. turns one object into polished gold (object ids of the clip), under the clip's own light;
5. inserts a glossy red sphere, under the clip's own light;

with the neural forward model ``data/models/forward_tiny`` when it is there (``--model DIR``) or else the classical
split-sum shader (``--classical`` forces it); the summary and the contact sheet say which. Writes into ``--out``
(created if needed; other files in it are left alone; every file is written beside it first and moved in once all
are done): input.mp4, gbuffers.mp4 (basecolor | normal | depth | roughness |
metallic), relit_<A>.mp4, relit_<B>.mp4, edit.mp4, insert.mp4, contact_sheet.png (one labelled row per video) and
summary.json; prints where they are and the wall time.
"""

from __future__ import annotations

HELP = ("the demo: shipped clip -> inverse rendering -> relight under two env maps, edit a material, insert an "
        "object; MP4s + contact sheet")

DEFAULT_CLIP = "demo_lebombo"
DEFAULT_ENVMAPS = ("kiara_1_dawn", "st_fagans_interior")
INVERSE_MODEL = "models/inverse_tiny"  # inside the shipped data folder
FORWARD_MODEL = "models/forward_tiny"
CACHE_MODEL = "models/forward_cache_tiny"  # the shipped forward model + a trained 3D-cache injection (insertion)
GBUFFER_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


def add_arguments(parser) -> None:
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, "output folder", required=False, default="demo_out")
    parser.add_argument("--clip", default=DEFAULT_CLIP, help=f"shipped clip name or clip folder (default {DEFAULT_CLIP})")
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


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), 'N' -> (N, N), both >= 8 (synth, serve and bench; parsed by the one size parser of every
    command, :func:`neural_render.pipelines.frame_size.parse_size_arg`)."""
    from neural_render.pipelines.frame_size import parse_size_arg

    size = parse_size_arg(text, minimum=8)
    return (size, size) if isinstance(size, int) else (size[1], size[0])


def inverse_folder(path: str | None):
    """--inverse-model or the shipped inverse_tiny; NeuralRenderError naming the folder (and how to make it)."""
    from pathlib import Path

    from neural_render.data_assets import data_dir
    from neural_render.errors import NeuralRenderError

    if path is not None:
        if not (Path(path) / "model_index.json").is_file():
            raise NeuralRenderError("not an inverse pipeline folder (no model_index.json)", path)
        return Path(path)
    folder = data_dir() / INVERSE_MODEL
    if not (folder / "model_index.json").is_file():
        raise NeuralRenderError("the shipped inverse model is missing: train it with scripts/train_inverse_tiny.py "
                                "(or pass --inverse-model DIR)", folder)
    return folder


def forward_folder(args):
    """The forward pipeline folder to use, or None for the classical shader."""
    from pathlib import Path

    from neural_render.data_assets import data_dir
    from neural_render.errors import NeuralRenderError

    if args.classical:
        if args.model is not None:
            raise NeuralRenderError("--classical and --model exclude each other")
        return None
    if args.model is not None:
        if not (Path(args.model) / "model_index.json").is_file():
            raise NeuralRenderError("not a forward pipeline folder (no model_index.json)", args.model)
        return Path(args.model)
    folder = data_dir() / FORWARD_MODEL
    return folder if (folder / "model_index.json").is_file() else None


def cache_folder(args, forward_dir):
    """The shipped cache-injection model for the insertion, or None: only beside the shipped forward model it was
    fine-tuned from (a --model of your own has no injection trained for it), and not with --no-cache."""
    from neural_render.data_assets import data_dir

    if args.no_cache or args.model is not None or forward_dir is None:
        return None
    folder = data_dir() / CACHE_MODEL
    return folder if (folder / "cache_injection" / "config.json").is_file() else None


def env_label(name: str) -> str:
    from pathlib import Path

    return Path(name).stem if Path(name).suffix else name


def write_outputs(folder, clip, result, envs, fps: float) -> list:
    """Every output file into ``folder`` (a fresh temporary folder); returns their names in order.

    clip: DemoClip; result: DemoResult; envs: {name: EnvMap} of the relights; fps: frames per second of the MP4s.
    """
    import torch

    from neural_render.cli.forward import write_mp4
    from neural_render.demo.sheet import demo_sheet
    from neural_render.io import write_image, write_video
    from neural_render.viz.contact_sheet import pass_to_display

    names = []
    videos = {"input.mp4": clip.video}
    videos.update({f"relit_{name}.mp4": video for name, video in result.relit.items()})
    videos.update({"edit.mp4": result.edited, "insert.mp4": result.inserted})
    mask = result.gbuffer.mask[0] if result.gbuffer.mask is not None else None
    passes = {p: pass_to_display(p, getattr(result.gbuffer, p)[0], mask) for p in GBUFFER_PASSES
              if getattr(result.gbuffer, p) is not None}
    for name, video in videos.items():
        write_mp4(folder / name, video, fps)
        names.append(name)
        if name == "input.mp4":
            write_video(folder / "gbuffers.mp4", torch.cat(list(passes.values()), dim=2).numpy(), fps=fps)
            names.append("gbuffers.mp4")
    own = clip.env.image if clip.env is not None else None
    tag = f"[{result.renderer}]"
    rows = [(f"input: {clip.name} (path traced{', lit by ' + clip.env.name if clip.env is not None else ''})",
             pass_to_display("rgb", clip.video[0]), own)]
    rows += [(f"estimated {p} (inverse model)", x, None) for p, x in passes.items()]
    rows += [(f"relit under {name} {tag}", pass_to_display("rgb", result.relit[name][0]), envs[name].image)
             for name in result.relit]
    rows.append((f"edit: {result.edit_target} -> gold metal {tag}", pass_to_display("rgb", result.edited[0]), own))
    insert_tag = f"[{result.insert_renderer}]" if result.insert_renderer else tag
    rows.append((f"insert: glossy red sphere {insert_tag}", pass_to_display("rgb", result.inserted[0]), own))
    write_image(folder / "contact_sheet.png", demo_sheet(rows))
    names.append("contact_sheet.png")
    return names


def run(args) -> int:
    import time
    from pathlib import Path

    from neural_render.cli.forward import load_env
    from neural_render.data_assets import clip_path
    from neural_render.demo.run import load_demo_clip
    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import claim_output

    start = time.perf_counter()
    if args.frames is not None and args.frames < 2:
        raise NeuralRenderError(f"--frames must be >= 2, got {args.frames}")
    names = [env_label(n) for n in args.envmaps]
    if names[0] == names[1]:
        raise NeuralRenderError(f"--envmaps needs two different env maps, got {args.envmaps[0]} twice")
    envs = {name: load_env(raw) for name, raw in zip(names, args.envmaps)}  # every input checked before work
    inverse_dir, forward_dir = inverse_folder(args.inverse_model), forward_folder(args)
    cache_dir = cache_folder(args, forward_dir)
    clip = load_demo_clip(clip_path(args.clip), args.frames)
    out = Path(args.out)
    with claim_output(out, command="demo", kind="dir", overwrite=args.overwrite,
                      inputs=[clip_path(args.clip), inverse_dir, forward_dir, cache_dir]):
        return _demo(args, start, names, envs, inverse_dir, forward_dir, cache_dir, clip, out)


def _demo(args, start, names, envs, inverse_dir, forward_dir, cache_dir, clip, out) -> int:
    import json
    import time
    from pathlib import Path

    from neural_render.data_assets import clip_path
    from neural_render.demo.run import EDIT, EDIT_LABEL, INSERT_LABEL, Renderer, run_demo
    from neural_render.io.atomic import atomic_dir
    from neural_render.io.output import write_folder_marker
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    inverse = InverseRenderingPipeline.from_pretrained(inverse_dir)
    if not inverse.is_trained:
        import logging
        logging.getLogger(__name__).warning(f"the inverse model {inverse_dir} is UNTRAINED: its G-buffers are "
                                            "meaningless")
    if forward_dir is None:
        renderer = Renderer(None, "classical split-sum shader", args.seed)
    else:
        from neural_render.pipelines.forward import ForwardPipeline

        forward = ForwardPipeline.from_pretrained(forward_dir)
        insert_forward = None
        if cache_dir is not None:
            from neural_render.pipelines.insert import CacheForwardPipeline

            insert_forward = CacheForwardPipeline.from_pretrained(cache_dir)
        renderer = Renderer(forward, f"neural forward model {forward_dir.name}", args.seed, insert_forward)
    loaded = time.perf_counter()
    result = run_demo(clip, inverse, renderer, envs, seed=args.seed)
    computed = time.perf_counter()
    with atomic_dir(out) as tmp:
        write_folder_marker(tmp, "demo")
        written = write_outputs(Path(tmp), clip, result, envs, clip.fps)
        summary = {"clip": str(clip_path(args.clip)), "frames": int(clip.video.shape[1]),
                   "size": [int(clip.video.shape[4]), int(clip.video.shape[3])], "inverse_model": str(inverse_dir),
                   "inverse_trained": bool(inverse.is_trained), "renderer": result.renderer,
                   "forward_model": None if forward_dir is None else str(forward_dir),
                   "insert_renderer": result.insert_renderer or result.renderer,
                   "insert_model": None if cache_dir is None else str(cache_dir),
                   "envmaps": names,
                   "edit": {"target": result.edit_target, **EDIT}, "insert": INSERT_LABEL, "notes": result.notes,
                   "seconds": {"load": round(loaded - start, 2), "compute": round(computed - loaded, 2),
                               "total": round(time.perf_counter() - start, 2)}}
        (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        written.append("summary.json")
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
    return 0
