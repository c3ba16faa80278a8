"""Import Blender's 8 CC0 world HDRIs as the held-out TEST env maps (+ a train_extra pool) into data/envmaps.

    cd /tmp && apt-get download blender-data && dpkg -x blender-data_*.deb /tmp/bd
    python scripts/import_envmaps.py --src /tmp/bd/usr/share/blender/datafiles/studiolights/world

Debian's ``blender-data`` package ships ``datafiles/studiolights/world/{city,courtyard,forest,interior,night,studio,
sunrise,sunset}.exr`` (1024x512 linear radiance, CC0, by Greg Zaal / HDRI Haven: see ``license.txt`` beside them).
Each becomes ``data/envmaps/blender_<name>.hdr`` shrunk to ``2 * height`` x ``height`` (default 256x128, like the
shipped Poly Haven maps of scripts/ship_envmaps.py) by the solid-angle-weighted block mean of
``neural_render.io.hdr.downsample_equirect``, which keeps the radiance integral over the sphere (the total light)
exactly, up to RGBE's ~1% rounding. The ``blender_`` prefix keeps them apart from the Poly Haven maps (e.g. both
sets have a forest).

Split rule, fixed before any scoring: sort the 8 names alphabetically; positions 0, 2, 4, 6 (city, forest, night,
sunrise) are ``test`` (scored once per shipped model, never seen by training or model selection), positions 1, 3,
5, 7 (courtyard, interior, studio, sunset) are ``train_extra`` (a pool for future training). The script writes those
two keys of ``split.json`` (``train`` and ``val`` are kept as they are) and the Blender section of ``CREDITS.md``;
it notes imported maps that show the same panorama as a shipped Poly Haven map (blender ``sunset`` is
``venice_sunset``) and refuses to write a split whose test maps duplicate one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neural_render.io.hdr import downsample_equirect, read_hdr, write_hdr

NAMES = ("city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")
PREFIX = "blender_"
SRC = "/usr/share/blender/datafiles/studiolights/world"
MARK_BEGIN = "<!-- import_envmaps.py: begin -->"
MARK_END = "<!-- import_envmaps.py: end -->"


def split_by_rule(names=NAMES) -> dict[str, list[str]]:
    """{'test': alphabetical positions 0, 2, 4, ..., 'train_extra': positions 1, 3, ...} (prefixed names)."""
    ordered = sorted(names)
    return {"test": [PREFIX + n for n in ordered[0::2]], "train_extra": [PREFIX + n for n in ordered[1::2]]}


def sphere_integral(image: np.ndarray) -> np.ndarray:
    """Radiance integrated over the sphere (3,) of an equirect (H, W, 3) image (W/m^2-like units of the map)."""
    h, w = image.shape[:2]
    theta = np.linspace(0.0, np.pi, h + 1)
    rows = (np.cos(theta[:-1]) - np.cos(theta[1:])) * 2 * np.pi / w  # solid angle of one pixel per row
    return (image.astype(np.float64) * rows[:, None, None]).sum((0, 1))


def same_panorama(a: np.ndarray, b: np.ndarray, threshold: float = 0.98) -> bool:
    """Whether two equal-size equirect maps show the same panorama: correlation of log luminance, best over yaw
    rotations (2-pixel steps), above ``threshold`` (distinct scenes of the same kind score below 0.9)."""
    x, y = np.log1p(a.mean(2)).ravel(), np.log1p(b.mean(2))
    best = max(np.corrcoef(x, np.roll(y, s, axis=1).ravel())[0, 1] for s in range(0, y.shape[1], 2))
    return bool(best > threshold)


def duplicates(dst: Path, new: list[str]) -> dict[str, list[str]]:
    """{new map: [already shipped maps (not blender_*) showing the same panorama]}."""
    old = {p.stem: read_hdr(p) for p in sorted(dst.glob("*.hdr")) if not p.stem.startswith(PREFIX)}
    out = {}
    for name in new:
        image = read_hdr(dst / f"{name}.hdr")
        out[name] = [o for o, im in old.items() if im.shape == image.shape and same_panorama(image, im)]
    return out


def credits_section(license_text: str, height: int, split: dict[str, list[str]], dups: dict[str, list[str]]) -> str:
    quoted = "\n".join(f"> {line}".rstrip() for line in license_text.strip().splitlines())
    return (f"{MARK_BEGIN}\n## Blender studio-light world HDRIs (blender_*)\n\n"
            "From Debian's `blender-data` package (3.4.1+dfsg-2), files "
            "`/usr/share/blender/datafiles/studiolights/world/<name>.exr` (1024x512). Their `license.txt`:\n\n"
            f"{quoted}\n\n"
            f"Shipped here as `blender_<name>.hdr`, downsampled to {2 * height}x{height} by scripts/import_envmaps.py "
            "(solid-angle-weighted block mean: total energy preserved).\n"
            f"- test (held out: scored once per shipped model): {', '.join(split['test'])}\n"
            f"- train_extra (pool for future training): {', '.join(split['train_extra'])}\n"
            + "".join(f"- note: {n} shows the same panorama as {', '.join(d)} (Greg Zaal's HDRI Haven map shipped "
                      "under another name), so it adds nothing new\n" for n, d in dups.items() if d)
            + f"{MARK_END}\n")


def update_credits(path: Path, section: str) -> None:
    """Replace the marked Blender section of CREDITS.md, or append it."""
    text = path.read_text() if path.exists() else "# Environment maps\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=SRC, help="folder holding the Blender world .exr files and license.txt")
    parser.add_argument("--dst", default="data/envmaps")
    parser.add_argument("--height", type=int, default=128, help="rows of the shipped maps (width = 2 x rows)")
    args = parser.parse_args()
    src, dst = Path(args.src), Path(args.dst)
    missing = [n for n in NAMES if not (src / f"{n}.exr").is_file()] + \
        ([] if (src / "license.txt").is_file() else ["license.txt"])
    if missing:
        raise SystemExit(f"missing in {src}: {', '.join(missing)} (see this script's docstring to get them)")
    dst.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        image = read_hdr(src / f"{name}.exr")
        small = downsample_equirect(image, args.height)
        out = dst / f"{PREFIX}{name}.hdr"
        write_hdr(out, small)
        before, after = sphere_integral(image), sphere_integral(read_hdr(out))
        drift = float(np.abs(after / before - 1).max())
        print(f"{name}.exr {image.shape[1]}x{image.shape[0]} -> {out} {small.shape[1]}x{small.shape[0]} "
              f"({out.stat().st_size // 1024} KiB, energy drift {100 * drift:.2f}%)")
        if drift > 0.02:
            raise SystemExit(f"{out}: energy changed by {100 * drift:.1f}%")
    rule = split_by_rule()
    dups = duplicates(dst, rule["test"] + rule["train_extra"])
    for name, same in dups.items():
        if same:
            print(f"note: {name} is the same panorama as {', '.join(same)}")
    leaked = [n for n in rule["test"] if dups[n]]
    if leaked:
        raise SystemExit(f"test maps {leaked} duplicate shipped maps: they would not be held out")
    split_path = dst / "split.json"
    split = json.loads(split_path.read_text()) if split_path.exists() else {}
    split.update(rule)
    split_path.write_text(json.dumps(split, indent=2) + "\n")
    update_credits(dst / "CREDITS.md", credits_section((src / "license.txt").read_text(), args.height, rule, dups))
    print(f"wrote {split_path} ({', '.join(f'{k}: {len(v)}' for k, v in split.items())}) and {dst / 'CREDITS.md'}")


if __name__ == "__main__":
    main()
