"""The output folder of ``neural-render inverse`` (and of every clip ``autolabel`` writes): estimated G-buffers of
one video as a clip folder (io/clip.py: meta.json, frames/NNNNNN.exr with rgb + the passes + mask, rgb.mp4) plus
browser-playable ``previews/<pass>.mp4`` and ``contact_sheet.png``."""

from __future__ import annotations

import os
from pathlib import Path

PREVIEW_DIR = "previews"
CONTACT_SHEET = "contact_sheet.png"
#: frame EXRs of the output clip: uncompressed (lossless). Outputs upsampled to the input size are smooth floats
#: that neither RLE nor zip shrink much (measured on 512x512 bilinear upsamples: rle = none in size at 2x the time,
#: zip -6% at 11x), and the time goes into every run
OUTPUT_EXR_COMPRESSION = "none"
#: x264 preset of the browser previews (io/video.write_video)
PREVIEW_PRESET = "veryfast"


def write_fast_png(path: Path, image) -> None:
    """uint8 (H, W, 3) -> PNG at zlib level 1 (lossless; ~3x faster than the default level 6 for a contact sheet of
    512-pixel tiles, file ~30% larger), atomically."""
    from PIL import Image

    from neural_render.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)


def write_outputs(folder: Path, rgb, gbuffer, camera, fps: float, rgb_format: str, settings: dict,
                  srgb8=None) -> None:
    """Clip folder + previews/<pass>.mp4 + contact_sheet.png into the (temporary, empty) ``folder``.

    rgb: (1, T, 3, H, W) linear; gbuffer: GBuffer (1, T, C, H, W); camera: Camera; fps: frames per second;
    rgb_format: "exr" or "mp4" (how the clip stores rgb); settings: recorded as meta.json ``extra["inverse"]``;
    srgb8: the decoded uint8 (T, H, W, 3) frames (rgb.mp4 is written from them, bit-identical), or None.
    Each pass is converted for display once (its preview and its contact-sheet column); the previews are encoded by
    ffmpeg on worker threads while the frame EXRs are written."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from neural_render.io import Clip, ClipMeta, write_clip, write_video
    from neural_render.io.exr import exr_compression
    from neural_render.viz.contact_sheet import COLUMN_ORDER, make_contact_sheet, pass_to_display

    meta = ClipMeta.for_camera(camera, fps=float(fps), extra={"inverse": settings})
    mask = gbuffer.mask[0] if gbuffer.mask is not None else None
    shown = {name: pass_to_display(name, x[0], mask) for name, x in gbuffer.passes.items()}
    (folder / PREVIEW_DIR).mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(write_video, folder / PREVIEW_DIR / f"{name}.mp4", y.numpy(), fps=float(fps),
                            preset=PREVIEW_PRESET) for name, y in shown.items()]
        stage = folder / ".clip"
        with exr_compression(OUTPUT_EXR_COMPRESSION):
            write_clip(stage, Clip(rgb=rgb, gbuffer=gbuffer, camera=camera, meta=meta), rgb_format=rgb_format,
                       srgb8=srgb8)
        for child in stage.iterdir():
            os.replace(child, folder / child.name)
        stage.rmdir()
        t = int(rgb.shape[1])  # the rows of viz.contact_sheet.gbuffer_contact_sheet: up to 6 frames spread evenly
        rows = np.unique(np.linspace(0, t - 1, num=min(t, 6)).round().astype(int))
        columns = {"rgb": pass_to_display("rgb", rgb[0, rows])}
        columns.update({name: shown[name][rows] for name in COLUMN_ORDER[1:] if name in shown})
        write_fast_png(folder / CONTACT_SHEET, make_contact_sheet(columns, max_rows=len(rows)))
        for job in jobs:
            job.result()
