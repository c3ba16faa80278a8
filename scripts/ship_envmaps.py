"""Downsample the workplace's CC0 HDR env maps into data/envmaps (run once by maintainers; the output is committed).

    python scripts/ship_envmaps.py --src ../shared/data/envmaps --height 128

Area-averaging keeps total energy. It writes only the .hdr files: the three-way split (``data/envmaps/split.json``:
train / val / test / train_extra, issue #22) and ``data/envmaps/CREDITS.md`` are kept in the repository and are never
rewritten here (the source CREDITS.md's train/test lines name which maps to convert; its old "test" maps are val).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from neural_render.io.hdr import downsample_equirect, read_hdr, write_hdr


def parse_split(credits: str) -> dict[str, list[str]]:
    split = {}
    for key in ("train", "test"):
        match = re.search(rf"^- {key}[^:]*:(.*?)(?=^- |\Z)", credits, flags=re.M | re.S)
        if not match:
            raise SystemExit(f"no '{key}' line in CREDITS.md")
        split[key] = [name.strip() for name in match.group(1).replace("\n", " ").split(",") if name.strip()]
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", default="../shared/data/envmaps")
    parser.add_argument("--dst", default="data/envmaps")
    parser.add_argument("--height", type=int, default=128)
    args = parser.parse_args()
    src, dst = Path(args.src), Path(args.dst)
    dst.mkdir(parents=True, exist_ok=True)
    credits = (src / "CREDITS.md").read_text()
    split = parse_split(credits)
    for name in split["train"] + split["test"]:
        matches = sorted(src.glob(f"{name}_*.hdr")) or sorted(src.glob(f"{name}.hdr"))
        if not matches:
            raise SystemExit(f"missing source env map for {name}")
        small = downsample_equirect(read_hdr(matches[0]), args.height)
        write_hdr(dst / f"{name}.hdr", small)
        print(f"{matches[0].name} -> {dst / (name + '.hdr')} {small.shape[1]}x{small.shape[0]}")


if __name__ == "__main__":
    main()
