#!/usr/bin/env python
"""Import real photographs as small image textures: data/textures/{train,val,test}/*.jpg + data/textures/CREDITS.md.

Source: the example images of Debian's ``opencv-doc`` package (OpenCV's samples/data; licence: the package's
copyright file, ``Files: *`` -> Apache-2.0 AND BSD-3-Clause). Get them with::

    cd /tmp && apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/ocv
    python scripts/import_textures.py /tmp/ocv/usr/share/doc/opencv-doc/examples/data

Its videos are NOT used (reserved for a real-footage evaluation). The split is BY FILE GROUP and was fixed before
any model saw these textures (issue #23); it is a pure function of the file names:

1. candidates: every ``*.jpg`` that is RGB with a short side of at least 256 px (this drops the grayscale
   chessboard calibration series left01..right14, ellipses.jpg, and the small logos / HappyFish);
2. near-duplicates share a group: the key is the file stem with ``_original`` / ``_modified``, a trailing digit run
   or a trailing capital L / R / A / B after a lower-case letter removed; ``left`` / ``right`` -> ``stereo``;
   ``text_*`` -> ``text`` (stereo pairs, before/after edits and re-shot scenes never straddle two splits);
3. groups in ``sorted()`` order, numbered i = 0, 1, ...: i % 5 == 0 -> test, i % 5 == 1 -> val, else train;
4. each file: short side resized to 256 px (Lanczos), centre 256x256 crop; written as ``<stem>.jpg`` (the crop at
   128x128) and ``<stem>_q0..q3.jpg`` (its four 128x128 quadrants), JPEG quality 90, sRGB.

Re-running writes the same files (the rule has no randomness). ``--check`` only prints the assignment.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SPLITS = ("train", "val", "test")
MIN_SIDE = 256
OUT_SIZE = 128


def group_key(stem: str) -> str:
    """Group of a file stem (rule 2 of the module doc)."""
    if stem in ("left", "right"):
        return "stereo"
    if stem.startswith("text_"):
        return "text"
    stem = re.sub(r"_(original|modified)$", "", stem)
    stem = re.sub(r"\d+$", "", stem)
    return re.sub(r"(?<=[a-z])[LRAB]$", "", stem)


def split_of_group(index: int) -> str:
    return "test" if index % 5 == 0 else "val" if index % 5 == 1 else "train"


def assignment(source: Path) -> dict[str, list[Path]]:
    """{split: [source files]} by the module doc's rule."""
    from PIL import Image

    groups: dict[str, list[Path]] = {}
    for path in sorted(source.glob("*.jpg")):
        with Image.open(path) as image:
            if image.mode != "RGB" or min(image.size) < MIN_SIDE:
                continue
        groups.setdefault(group_key(path.stem), []).append(path)
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for i, key in enumerate(sorted(groups)):
        out[split_of_group(i)] += groups[key]
    return out


def crops(path: Path):
    """[(suffix, 128x128 PIL image)] of one file (rule 4)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = MIN_SIDE / min(w, h)
        image = image.resize((max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))), Image.LANCZOS)
        w, h = image.size
        left, top = (w - MIN_SIDE) // 2, (h - MIN_SIDE) // 2
        crop = image.crop((left, top, left + MIN_SIDE, top + MIN_SIDE))
    out = [("", crop.resize((OUT_SIZE, OUT_SIZE), Image.LANCZOS))]
    for q, (x, y) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        out.append((f"_q{q}", crop.crop((x * OUT_SIZE, y * OUT_SIZE, (x + 1) * OUT_SIZE, (y + 1) * OUT_SIZE))))
    return out


CREDITS = """# Image textures (`data/textures/`)

Real photographs used as basecolor textures by the synthetic data engine (generator version 2,
`neural_render/synth/textures.py`, family `photo`), made by `scripts/import_textures.py`.

Source: the example images (`examples/data/*.jpg`) of Debian's **`opencv-doc`** package (version {version}),
i.e. OpenCV's `samples/data`. Licence: per the package's copyright file
(`/usr/share/doc/opencv-doc/copyright`, stanza `Files: *`): **Apache-2.0 AND BSD-3-Clause**, Copyright
2000-2022 Intel Corporation, Willow Garage Inc., NVIDIA Corporation, Advanced Micro Devices Inc., OpenCV Foundation,
Itseez Inc., Xperience AI, Shenzhen Institute of Artificial Intelligence and Robotics for Society, and the respective
OpenCV contributors. The individual photographs' origins are as distributed by OpenCV; they were not traced further.
The package's videos are not used (reserved for real-footage evaluation).

Processing: short side resized to 256 px, centre 256x256 crop, saved at 128x128 plus its four 128x128 quadrants
(JPEG quality 90, sRGB).

Split (by file group, fixed before any use; see the script's docstring for the exact rule): groups of near-duplicate
files in sorted order, every 5th (i % 5 == 0) to **test**, the next (i % 5 == 1) to **val**, the rest to **train**.

{table}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="opencv-doc examples/data folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "textures")
    parser.add_argument("--version", default="4.6.0+dfsg-12", help="opencv-doc package version (for CREDITS.md)")
    parser.add_argument("--check", action="store_true", help="print the assignment only")
    args = parser.parse_args(argv)
    split = assignment(args.source)
    rows = ["| split | source files |", "|---|---|"]
    for name in SPLITS:
        rows.append(f"| {name} | {', '.join(p.name for p in split[name])} |")
        print(f"{name:5s} {len(split[name]):2d} files: {' '.join(p.stem for p in split[name])}")
    if args.check:
        return 0
    for name in SPLITS:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for path in split[name]:
            for suffix, image in crops(path):
                image.save(folder / f"{path.stem}{suffix}.jpg", quality=90)
    (args.out / "CREDITS.md").write_text(CREDITS.format(version=args.version, table="\n".join(rows)))
    total = sum(p.stat().st_size for p in args.out.rglob("*.jpg"))
    print(f"wrote {sum(1 for _ in args.out.rglob('*.jpg'))} textures, {total / 1e6:.2f} MB, into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
