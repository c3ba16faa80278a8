"""What ``neural-render demo`` writes into its output folder (one folder renamed into place; other files in an
existing folder are left alone by io/atomic.atomic_dir): input.mp4, gbuffers.mp4 (basecolor | normal | depth |
roughness | metallic), relit_<A>.mp4, relit_<B>.mp4, edit.mp4, insert.mp4, contact_sheet.png (one labelled row per
video) and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

GBUFFER_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


def env_label(name: str) -> str:
    """An env map as given (shipped name or file) -> its label: the name, or the file's stem."""
    return Path(name).stem if Path(name).suffix else name


def write_outputs(folder, clip, result, envs, fps: float) -> list:
    """Every video and the contact sheet into ``folder`` (a fresh temporary folder); returns their names in order.

    clip: demo.run.DemoClip; result: demo.run.DemoResult; envs: {name: EnvMap} of the relights; fps: frames per
    second of the MP4s."""
    import torch

    from neural_render.demo.sheet import demo_sheet
    from neural_render.io import write_image, write_video
    from neural_render.io.video_output import write_mp4
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
    source = clip.settings.get("source", "path traced")
    rows = [(f"input: {clip.name} ({source}{', lit by ' + clip.env.name if clip.env is not None else ''})",
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


def run_demo_into(out: Path, clip, clip_dir: Path, names: list[str], envs: dict, inverse_dir: Path,
                  forward_dir: Path | None, cache_dir: Path | None, seed: int, start: float):
    """Load the models, run the demo on ``clip`` (demo.run.run_demo) and write ``out`` (module doc).

    names: the two env map labels; envs: {label: EnvMap}; start: time.perf_counter() when the command started (for
    the timings in summary.json). Returns (DemoResult, summary dict, names of the written files)."""
    import time

    from neural_render.demo.models import load_models
    from neural_render.demo.run import EDIT, INSERT_LABEL, run_demo
    from neural_render.io.atomic import atomic_dir
    from neural_render.io.output import write_folder_marker

    inverse, renderer = load_models(inverse_dir, forward_dir, cache_dir, seed)
    loaded = time.perf_counter()
    result = run_demo(clip, inverse, renderer, envs, seed=seed)
    computed = time.perf_counter()
    with atomic_dir(out) as tmp:
        write_folder_marker(tmp, "demo")
        written = write_outputs(Path(tmp), clip, result, envs, clip.fps)
        summary = {"clip": str(clip_dir), "frames": int(clip.video.shape[1]),
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
    return result, summary, written
