#!/usr/bin/env python
"""Regenerate the docs/ contact sheets of the shipped inverse models on a scene no model was trained on (issue #23).

    python scripts/make_docs_sheets.py [--data data_cache] [--models inverse_tiny inverse_v2] [--threads 1]

1. ``neural-render synth --split showcase_table --clips 1 --frames 8 --size 128x128 --spp 64`` into
   ``<data>/showcase_table_128`` (when missing): a tabletop product shot with a BLACK background (emitters hidden
   from the camera), built ONLY from held-out shape families (revolved, composite, mug) and material families
   (marble, wood), test env maps and test photos, seed 90000 (neural_render/synth/splits.py). It is not part of any
   score and was never used for a choice.
2. For each model: its G-buffer estimate at the model's native processing size (one window of the 8 frames), then
   ``docs/showcase_table_<model>.png``: rows = 3 frames; columns = input | mask truth / model | basecolor truth /
   model | normal truth / model | depth truth / model | roughness truth / model | metallic truth / model. Depth is
   shown per column normalised to its own far value (the model's depth is relative).

Outputs are claimed like every command's (neural_render/io/output.py): an existing PNG this script did not write is
refused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSES = ("mask", "basecolor", "normal", "depth", "roughness", "metallic")
OWNER = "make-docs-sheets"


def make_clip(data: Path) -> Path:
    folder = data / "showcase_table_128"
    subprocess.run([sys.executable, "-m", "neural_render", "synth", "--out", str(folder), "--split", "showcase_table",
                    "--clips", "1", "--frames", "8", "--size", "128x128", "--spp", "64", "--no-progress"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder / "clip_000000"


def sheet_columns(clip, pred) -> dict:
    """Display columns {label: uint8 (T, H, W, 3)} of truth beside prediction for one clip (batch index 0)."""
    from neural_render.viz.contact_sheet import pass_to_display

    truth = clip.gbuffer.passes
    cols = {"input": pass_to_display("rgb", clip.rgb[0])}
    for name in PASSES:
        shown = "roughness" if name == "mask" else name  # a mask shows as a grey-level pass
        cols[f"{name} truth"] = pass_to_display(shown, truth[name][0], truth["mask"][0])
        cols[f"{name} model"] = pass_to_display(shown, pred.passes[name][0], pred.passes["mask"][0])
    return cols


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--data", default=str(ROOT / "data_cache"), help="folder for the showcase clip")
    parser.add_argument("--models", nargs="+", default=["inverse_tiny", "inverse_v2"], help="shipped names or folders")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="output folder (default docs/)")
    args = parser.parse_args()

    import torch

    from neural_render import hub
    from neural_render.io import read_clip, write_image
    from neural_render.io.output import claim_output
    from neural_render.viz.contact_sheet import make_contact_sheet

    torch.set_num_threads(args.threads)
    clip_dir = make_clip(Path(args.data))
    clip = read_clip(clip_dir)
    for spec in args.models:
        pipe = hub.load_inverse(spec)
        with torch.no_grad():
            pred = pipe(clip.rgb, window=clip.rgb.shape[1], overlap=0, seed=0, progress=False).gbuffer
        name = Path(spec).name
        out = Path(args.docs) / f"showcase_table_{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        with claim_output(out, command=OWNER, kind="file", inputs=[os.fspath(clip_dir)]):
            write_image(out, make_contact_sheet(sheet_columns(clip, pred), max_rows=3), owner=OWNER)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
