#!/usr/bin/env python
"""Write the two small real clips shipped in data/clips/ (real_box, real_pedestrians; issue #26).

    python scripts/make_real_demo_clips.py [--doc DIR] [--cache data_cache/opencv_doc] [--out data/clips]

``--doc``: the opencv-doc doc folder (holding ``examples/`` and ``opencv4/``); default: the installed one
(/usr/share/doc/opencv-doc) or one unpacked under ``--cache``, else the package is downloaded with
``apt-get download`` and unpacked there (neural_render/data/real_footage.py). What is cut and how:
neural_render/data/real_demo_clips.py. Credits: data/clips/CREDITS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--doc", default=None, help="opencv-doc doc folder (default: found or fetched)")
    parser.add_argument("--cache", default=str(ROOT / "data_cache" / "opencv_doc"),
                        help="where the package is looked for / unpacked (default data_cache/opencv_doc)")
    parser.add_argument("--out", default=str(ROOT / "data" / "clips"), help="folder of the clip folders")
    args = parser.parse_args(argv)

    from neural_render.data.real_demo_clips import write_real_demo_clips
    from neural_render.data.real_footage import fetch_opencv_doc
    from neural_render.errors import NeuralRenderError

    try:
        doc = Path(args.doc) if args.doc else fetch_opencv_doc(args.cache)
        written = write_real_demo_clips(doc, args.out)
    except NeuralRenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for folder in written:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder} ({size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
