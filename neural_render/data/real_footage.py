"""The real-footage set: clip folders cut from the real videos and photos of Debian's ``opencv-doc`` package.

Sources (``opencv-doc`` 4.6.0, Apache-2.0 AND BSD-3-Clause, see ``data/clips/CREDITS.md``), split by SOURCE, never
by frame (fixed before any model saw them; :data:`VIDEO_SPLITS`):

* videos: ``tree.avi`` (a tree through a window) and ``vtest.avi`` (pedestrians on a campus) -> train;
  ``cup.mp4`` (a hand turning a dark bottle before a white wall) -> val; ``box.mp4`` (a hand holding a printed box
  over a white table) -> test. ``Megamind*.avi`` is computer animation, not real footage: not used.
* photos (``examples/data/*.jpg``): each photo keeps the split it has as a texture of the synthetic data engine
  (``data/textures/{train,val,test}/<stem>.jpg``, scripts/import_textures.py), so a test photo is never seen in
  training by either route; photos that are not textures there (drawings, logos, charts) are not used. A photo
  becomes one clip: a slow pan-and-zoom (8 frames) over it.

Clips: ``frames`` frames (default 8) taken every ``stride`` source frames (default 2), non-overlapping; at most
``max_clips`` clips per video, evenly spread over it. Each frame is resized (area) so its short side is ``size``
(default 64) and centre-cropped to ``size`` x ``size`` (the forward model trains on square clips). Clip folders are
the project's format (:func:`neural_render.io.write_clip`: lossless rgb.mp4, identity poses, 60 deg FOV), named
``<source>_<index>``, under ``<out>/<split>/``; ``<out>/real_set.json`` records every clip's source, split and
source frame numbers. Auto-labelling (G-buffers from the inverse model) is a separate step:
``neural-render autolabel <out>/<split> --out ...`` (scripts/make_real_set.py runs both).

Finding the package: :func:`find_opencv_doc` looks in ``/usr/share/doc/opencv-doc`` and in the given cache folder;
:func:`fetch_opencv_doc` downloads the .deb with ``apt-get download`` and unpacks it there (no root needed).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SYSTEM_DOC = Path("/usr/share/doc/opencv-doc")
PACKAGE = "opencv-doc"


@dataclass(frozen=True)
class VideoSource:
    """name: clip prefix; path: inside the package's doc folder (``.gz``: gzip-compressed); split."""

    name: str
    path: str
    split: str


VIDEO_SPLITS: tuple[VideoSource, ...] = (
    VideoSource("tree", "examples/data/tree.avi", "train"),
    VideoSource("vtest", "examples/data/vtest.avi", "train"),
    VideoSource("cup", "opencv4/html/cup.mp4.gz", "val"),
    VideoSource("box", "opencv4/html/box.mp4.gz", "test"),
)
PHOTO_FOLDER = "examples/data"


# ------------------------------------------------------------------------------------------- the package
def find_opencv_doc(cache: str | os.PathLike | None = None) -> Path | None:
    """The ``opencv-doc`` doc folder: installed (``/usr/share/doc/opencv-doc``) or unpacked under ``cache``."""
    candidates = [SYSTEM_DOC]
    if cache is not None:
        candidates.append(Path(cache) / "usr" / "share" / "doc" / PACKAGE)
    for folder in candidates:
        if all((folder / v.path).is_file() for v in VIDEO_SPLITS):
            return folder
    return None


def fetch_opencv_doc(cache: str | os.PathLike) -> Path:
    """The ``opencv-doc`` doc folder: :func:`find_opencv_doc`'s when there is one, else the package downloaded with
    ``apt-get download`` and unpacked under ``cache`` (no installation, no root). NeuralRenderError when apt-get or
    dpkg-deb fails."""
    cache = Path(cache)
    found = find_opencv_doc(cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True, capture_output=True, text=True)
            debs = sorted(Path(tmp).glob(f"{PACKAGE}_*.deb"))
            if not debs:
                raise NeuralRenderError(f"apt-get download {PACKAGE} wrote no .deb", tmp)
            unpacked = Path(tmp) / "root"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise NeuralRenderError(f"could not download / unpack {PACKAGE}: {detail.strip()[-300:]}", cache) from err
        for child in unpacked.iterdir():
            target = cache / child.name
            if not target.exists():
                shutil.move(str(child), str(target))
    found = find_opencv_doc(cache)
    if found is None:
        raise NeuralRenderError(f"{PACKAGE} was unpacked but its videos are missing", cache)
    return found


# ------------------------------------------------------------------------------------------- decoding
@contextlib.contextmanager
def decompressed(path: Path):
    """The video file to decode: ``path`` itself, or for a ``.gz`` file its content in a temporary file (removed
    on exit)."""
    if path.suffix != ".gz":
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield plain


def read_source_video(path: Path) -> tuple[np.ndarray, float]:
    """(T, H, W, 3) uint8 frames and the frame rate of a video file (``.gz``: see :func:`decompressed`). Old AVIs
    with a wrong duration in their header decode fully (imageio's ffmpeg reader, no length check)."""
    import imageio.v3 as iio

    with decompressed(path) as plain:
        fps = float(iio.immeta(plain, plugin="FFMPEG").get("fps") or 30.0)
        return np.asarray(iio.imread(plain, index=None)), fps


def square_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: short side resized to ``size`` (area), centre crop."""
    from PIL import Image

    t, h, w, _ = frames.shape
    scale = size / min(h, w)
    rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
    x0, y0 = (rw - size) // 2, (rh - size) // 2
    out = np.empty((t, size, size, 3), np.uint8)
    for i in range(t):
        image = Image.fromarray(frames[i]).resize((rw, rh), Image.Resampling.BOX)
        out[i] = np.asarray(image)[y0:y0 + size, x0:x0 + size]
    return out


def video_clip_starts(num_frames: int, frames: int, stride: int, max_clips: int) -> list[int]:
    """First source frame of each clip: non-overlapping spans of ``frames * stride`` source frames, at most
    ``max_clips`` of them evenly spread over the video."""
    span = frames * stride
    count = num_frames // span
    if count < 1:
        return []
    chosen = np.unique(np.linspace(0, count - 1, min(count, max_clips)).round().astype(int))
    return [int(i) * span for i in chosen]


def photo_pan(photo: np.ndarray, frames: int, size: int, seed: int) -> np.ndarray:
    """(frames, size, size, 3) uint8: a slow pan-and-zoom over a (H, W, 3) photo (square window of 70..85 % of the
    short side moving between two random positions; deterministic for ``seed``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    side = min(h, w)
    s0, s1 = rng.uniform(0.70, 0.85, 2) * side
    p0, p1 = rng.uniform(0, 1, (2, 2))
    image = Image.fromarray(photo)
    out = np.empty((frames, size, size, 3), np.uint8)
    for i, a in enumerate(np.linspace(0.0, 1.0, frames)):
        s = (1 - a) * s0 + a * s1
        py, px = (1 - a) * p0 + a * p1
        y, x = py * (h - s), px * (w - s)
        out[i] = np.asarray(image.resize((size, size), Image.Resampling.BOX, box=(x, y, x + s, y + s)))
    return out


def photo_splits(textures: Path, photos: Path) -> dict[str, list[Path]]:
    """{split: [photo files]}: the photos of ``photos`` that are textures in ``textures/<split>/<stem>.jpg``."""
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for texture in sorted((textures / split).glob("*.jpg")):
            if texture.stem.endswith(("_q0", "_q1", "_q2", "_q3")):
                continue
            source = photos / texture.name
            if source.is_file():
                out[split].append(source)
    return out


# ------------------------------------------------------------------------------------------- the set
def write_real_clip(out: Path, frames_u8: np.ndarray, fps: float, extra: dict, owner: str = "make_real_set",
                    fov: float = 60.0) -> None:
    """One clip folder from (T, H, W, 3) uint8 sRGB frames: lossless rgb.mp4 (the frames as they are), identity
    poses (a static camera) and a ``fov``-degree horizontal field of view, both assumed; ``owner``: the output
    marker's command."""
    import torch

    from neural_render.io import Clip, ClipMeta, write_clip
    from neural_render.render.tonemap import srgb_to_linear
    from neural_render.types import Camera, GBuffer

    t, h, w, _ = frames_u8.shape
    camera = Camera.from_fov(fov, w, h, torch.eye(4).repeat(1, t, 1, 1))
    rgb = srgb_to_linear(torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 255.0)[None].contiguous()
    meta = ClipMeta.for_camera(camera, fps=float(fps), extra=extra)
    write_clip(out, Clip(rgb=rgb, gbuffer=GBuffer(), camera=camera, meta=meta), rgb_format="mp4", owner=owner,
               srgb8=frames_u8)


def make_real_set(doc: Path, out: Path, textures: Path, size: int = 64, frames: int = 8, stride: int = 2,
                  max_clips: int = 24, videos: tuple[VideoSource, ...] = VIDEO_SPLITS) -> dict:
    """Write the real-footage clip folders under ``out/<split>/`` and ``out/real_set.json`` (module doc); clips
    already written are kept (resumable). Returns the record. ``doc``: the opencv-doc folder."""
    for video in videos:  # every input checked before anything is written
        if not (doc / video.path).is_file():
            raise NeuralRenderError("video missing from the opencv-doc folder", doc / video.path)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"format": "neural_render.real_set", "version": 1, "source": f"Debian {PACKAGE}", "size": size,
                    "frames": frames, "stride": stride, "max_clips": max_clips, "clips": []}
    for video in videos:
        path = doc / video.path
        decoded, fps = read_source_video(path)
        for index, start in enumerate(video_clip_starts(len(decoded), frames, stride, max_clips)):
            name = f"{video.name}_{index:02d}"
            picked = list(range(start, start + frames * stride, stride))
            target = out / video.split / name
            if not (target / "meta.json").is_file():
                write_real_clip(target, square_frames(decoded[picked], size), fps / stride,
                       {"source": video.path, "source_frames": picked, "real_set": video.split})
            record["clips"].append({"clip": f"{video.split}/{name}", "source": video.name, "split": video.split,
                                    "kind": "video", "source_frames": picked})
    for split, files in photo_splits(textures, doc / PHOTO_FOLDER).items():
        for k, photo_path in enumerate(files):
            name = f"photo_{photo_path.stem}"
            target = out / split / name
            if not (target / "meta.json").is_file():
                from PIL import Image

                with Image.open(photo_path) as image:
                    photo = np.asarray(image.convert("RGB"))
                seed = int.from_bytes(photo_path.stem.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
                write_real_clip(target, photo_pan(photo, frames, size, seed), 8.0,
                       {"source": f"{PHOTO_FOLDER}/{photo_path.name}", "real_set": split, "pan_seed": seed})
            record["clips"].append({"clip": f"{split}/{name}", "source": f"photo_{photo_path.stem}", "split": split,
                                    "kind": "photo"})
    counts = {s: sum(c["split"] == s for c in record["clips"]) for s in SPLITS}
    record["counts"] = counts
    from neural_render.io.atomic import atomic_path

    with atomic_path(out / "real_set.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    log.info("real set %s: %s clips", out, counts)
    return record
