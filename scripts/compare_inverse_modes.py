#!/usr/bin/env python
"""Joint vs per-pass inverse rendering at EQUAL training steps, then ``neural-render bench inverse`` on both.

    python scripts/compare_inverse_modes.py [--steps 600] [--data data_cache] [--out out/inverse_modes]

Trains configs/experiment/inverse_tiny.yaml (joint: all five passes in one run) and the same model with
configs/experiment/inverse_tiny_per_pass.yaml composed on top (one pass per run, selected by the pass embedding),
both for ``--steps`` steps with scripts/train_inverse_tiny.py (1 torch thread each, run one after the other), then
runs ``neural-render bench inverse --model <per_pass> --joint-model <joint> --data <held-out clips>``, which prints
the speed ratio (5 per-pass runs / 1 joint run) and the metric difference; its output is also saved as
``<out>/bench_inverse.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--data", default=str(ROOT / "data_cache"))
    parser.add_argument("--out", default=str(ROOT / "out" / "inverse_modes"))
    args = parser.parse_args()
    out = Path(args.out)
    variants = {"joint": [], "per_pass": ["--extra-config", "configs/experiment/inverse_tiny_per_pass.yaml"]}
    for name, extra in variants.items():
        cmd = [sys.executable, str(ROOT / "scripts" / "train_inverse_tiny.py"), "--max-steps", str(args.steps),
               "--max-minutes", "600", "--threads", "1", "--skip-eval", "--data", args.data,
               "--out", str(out / name), "--logs", str(out / "logs" / name), *extra]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    cmd = [sys.executable, "-m", "neural_render", "bench", "inverse", "--model", str(out / "per_pass"),
           "--joint-model", str(out / "joint"), "--data", str(Path(args.data) / "synth_test_64")]
    print(" ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    (out / "bench_inverse.txt").write_text(result.stdout)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
