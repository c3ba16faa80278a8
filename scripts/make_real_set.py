#!/usr/bin/env python
"""Make the real-footage set (issue #26) from Debian's opencv-doc package, then auto-label it.

    python scripts/make_real_set.py [--out data_cache/real_64] [--labelled data_cache/real_64_labelled]
                                    [--model inverse_v2] [--cache data_cache/opencv_doc] [--doc DIR] [--size 64]
                                    [--no-label]

1. The package: ``--doc DIR`` (its ``usr/share/doc/opencv-doc`` folder), else the installed one, else
   ``apt-get download opencv-doc`` unpacked under ``--cache`` (no root, nothing installed).
2. Clips: neural_render/data/real_footage.py (split by source video / photo, never by frame; 64x64 square clips of
   8 frames) under ``--out/{train,val,test}`` and ``--out/real_set.json``. Finished clips are kept (resumable).
3. Labels: ``neural-render autolabel --out/<split> --out --labelled/<split> --model --model`` per split (G-buffers
   from the inverse model, no env map: the lighting condition is absent for real clips). ``--labelled`` then feeds
   Realiz3D / the real LoRA (scripts/train_forward_real.py) and ``neural-render eval forward --real``.

Time on 2 cores: about 40 s for the clips (decoding the videos), 30 s for the labels.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from neural_render.data.real_footage import SPLITS, fetch_opencv_doc, make_real_set
from neural_render.errors import NeuralRenderError

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=ROOT / "data_cache" / "real_64")
    parser.add_argument("--labelled", type=Path, default=ROOT / "data_cache" / "real_64_labelled")
    parser.add_argument("--model", default="inverse_v2", help="inverse model of the labels (default inverse_v2)")
    parser.add_argument("--cache", type=Path, default=ROOT / "data_cache" / "opencv_doc")
    parser.add_argument("--doc", type=Path, default=None, help="an unpacked opencv-doc doc folder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--no-label", action="store_true", help="make the clips only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        doc = args.doc or fetch_opencv_doc(args.cache)
        record = make_real_set(Path(doc), args.out, ROOT / "data" / "textures", size=args.size)
    except NeuralRenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"real set {args.out}: {record['counts']}")
    if args.no_label:
        return 0
    for split in SPLITS:
        cmd = [sys.executable, "-m", "neural_render", "autolabel", str(args.out / split), "--out",
               str(args.labelled / split), "--model", args.model, "--no-progress"]
        code = subprocess.run(cmd, cwd=ROOT).returncode
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
