#!/usr/bin/env python
"""Regenerate the docs/ contact sheets of the shipped models on the two shipped REAL clips (issue #26).

    python scripts/make_real_sheets.py [--clips real_box real_pedestrians] [--envmaps A B] [--threads 1]

For each clip (data/clips/<clip>, 24 frames of 128x96 cut from opencv-doc's videos, data/clips/CREDITS.md):

* ``docs/real_<clip>_inverse.png`` (``<clip>`` without its ``real_`` prefix: docs/real_box_inverse.png): the
  shipped ``inverse_v2`` at its NATIVE 128 px (the clip's own size; its command default is 64 px); one labelled
  row per pass (input, basecolor, normal, depth, roughness, metallic, mask), 4 frames spread over the clip. Depth is
  normalised to its own far value (the model's depth is relative), the mask shown grey.
* ``docs/real_<clip>_relight.png``: the relight pipeline (``inverse_v2`` + each forward model of :data:`FORWARDS`:
  ``forward_tiny``, ``forward_real`` (shifters trained on real footage, e_real) and ``forward_real_lora``; seed 0,
  domain real), one row per model under each env map
  on the clip area-resized to 64x48, because ``forward_tiny`` was trained on 64-px frames and renders at its input
  size: the inverse model then also runs at 64 px (its command default). Rows: the 64x48 input and the relit
  video under each of two shipped env maps (default kiara_1_dawn (train) and st_fagans_interior (val), the demo's;
  the first column shows the env map), shown 2x enlarged (nearest). The clips carry no light: real footage has no
  env map, and the identity camera pose means the env map's horizon is level with the camera's view.

Sheets are drawn by neural_render/demo/sheet.py's ``demo_sheet`` (labelled rows, frames in columns) from
neural_render/viz's display conversions, under a one-line title (``label_strip``). Outputs are claimed like every
command's (neural_render/io/output.py): an existing PNG this script did not write is refused. About 20 s on one CPU
thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OWNER = "make-real-sheets"
INVERSE = "inverse_v2"
FORWARDS = ("forward_tiny", "forward_real", "forward_real_lora")  # plain; Realiz3D shifters (e_real); real LoRA
PASSES = ("basecolor", "normal", "depth", "roughness", "metallic", "mask")
COLUMNS = 4  # frames per row
RELIGHT_SIZE = (48, 64)  # (h, w): forward_tiny's 64-px frames at the clips' 4:3


def titled(title: str, sheet):
    """A one-line title strip over a sheet (uint8 (H, W, 3))."""
    import numpy as np

    from neural_render.viz.contact_sheet import label_strip

    return np.concatenate([label_strip(sheet.shape[1], title), np.full((2, sheet.shape[1], 3), 255, np.uint8),
                           sheet], axis=0)


def inverse_sheet(name: str, clip, gbuffer, size: int):
    from neural_render.demo.sheet import demo_sheet
    from neural_render.viz.contact_sheet import pass_to_display

    mask = gbuffer.mask[0]
    rows = [(f"input: {name} (real footage, {clip.rgb.shape[4]}x{clip.rgb.shape[3]})",
             pass_to_display("rgb", clip.rgb[0]), None)]
    for p in PASSES:
        shown = "roughness" if p == "mask" else p  # the mask shows as a grey-level pass
        covered = float((gbuffer.mask > 0.5).float().mean())  # all white is easily taken for a blank row
        label = {"depth": "depth (relative, near = bright)",
                 "mask": f"mask (white = foreground: {100 * covered:.1f} % of all pixels)"}.get(p, p)
        rows.append((f"{label} ({INVERSE})", pass_to_display(shown, gbuffer.passes[p][0], mask), None))
    return titled(f"{name}: {INVERSE} G-buffers at its native {size} px", demo_sheet(rows, num_columns=COLUMNS))


def relight_sheet(name: str, video, relit: dict, envs: dict):
    """relit: {forward model: {env name: (1, T, 3, h, w)}}."""
    from neural_render.demo.sheet import demo_sheet
    from neural_render.viz.contact_sheet import pass_to_display

    def big(x):  # (T, H, W, 3) uint8 -> 2x nearest, for readable tiles and labels
        return x.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)

    h, w = video.shape[-2:]
    rows = [(f"input {w}x{h} (area-resized)", big(pass_to_display("rgb", video[0])), None)]
    for env in envs:
        for model, videos in relit.items():
            rows.append((f"relit under {env} ({model})", big(pass_to_display("rgb", videos[env][0])), envs[env].image))
    title = f"{name}: {INVERSE} + {' / '.join(relit)} at their native {w}x{h} (shown 2x)"
    return titled(title, demo_sheet(rows, num_columns=COLUMNS))


def write_sheet(path: Path, image, inputs) -> None:
    from neural_render.io import write_image
    from neural_render.io.output import claim_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with claim_output(path, command=OWNER, kind="file", inputs=[os.fspath(p) for p in inputs]):
        write_image(path, image, owner=OWNER)
    print(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--clips", nargs="+", default=["real_box", "real_pedestrians"], help="shipped clip names")
    parser.add_argument("--envmaps", nargs=2, default=["kiara_1_dawn", "st_fagans_interior"], metavar=("A", "B"),
                        help="two shipped env maps to relight under (default: the demo's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="output folder (default docs/)")
    args = parser.parse_args()

    import torch

    from neural_render import hub
    from neural_render.data_assets import clip_path
    from neural_render.io import read_clip
    from neural_render.io.envmap_input import load_env
    from neural_render.types import Camera

    torch.set_num_threads(args.threads)
    inverse = hub.load_inverse(INVERSE)
    relights = {model: hub.load_relight(INVERSE, model) for model in FORWARDS}
    envs = {name: load_env(name) for name in args.envmaps}
    docs = Path(args.docs)
    for name in args.clips:
        folder = clip_path(name)
        clip = read_clip(folder)
        stem = f"real_{name.removeprefix('real_')}"  # docs/real_box_*.png for the clip real_box
        with torch.no_grad():
            native = inverse.native_size
            gbuffer = inverse(clip.rgb, seed=0, progress=False, processing_size=native).gbuffer
            write_sheet(docs / f"{stem}_inverse.png", inverse_sheet(name, clip, gbuffer, native),
                        [folder])
            h, w = RELIGHT_SIZE
            b, t, c, H, W = clip.rgb.shape
            video = torch.nn.functional.interpolate(clip.rgb.reshape(b * t, c, H, W), size=(h, w), mode="area")
            video = video.reshape(b, t, c, h, w)
            camera = Camera(clip.camera.intrinsics * (w / W), clip.camera.camera_to_world, w, h)
            relit = {model: dict(zip(envs, relight(video, list(envs.values()), camera=camera, seed=0).videos))
                     for model, relight in relights.items()}
        sheet = relight_sheet(name, video, relit, envs)
        write_sheet(docs / f"{stem}_relight.png", sheet, [folder])
    return 0


if __name__ == "__main__":
    sys.exit(main())
