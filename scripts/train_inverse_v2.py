#!/usr/bin/env python
"""Make, continue or re-make the generator-2 inverse model ``data/models/inverse_v2`` (issue #23).

    python scripts/train_inverse_v2.py [--minutes 90] [--total-steps 6000] [--run out/chains/inverse_v2]
                                       [--data data_cache] [--export data/models/inverse_v2] [--threads 1]
                                       [--from-scratch [--replay data/models/inverse_v2/training.json] | --until-done]

1. Data: ``<data>/synth_train2_128`` (``neural-render synth --split train2 --clips 512 --frames 8 --size 128x128
   --spp 16``; generator 2, neural_render/synth/splits.py) is made when missing or unfinished (finished clips are
   skipped). Validation and test sets are not read here (``scripts/score_shipped_models.py`` scores them).
2. Training: ``scripts/train_chain.py`` with ``configs/trainer/cpu_train.yaml`` + ``configs/experiment/inverse_v2.yaml``
   in ``--run``: each call trains one more segment of ``--minutes`` from the chain's last checkpoint (a later
   session continues it), ``--until-done`` / ``--from-scratch`` run segments back to back until ``--total-steps``;
   ``--replay`` ends segments where a recorded chain's did. The config starts from ``data/models/inverse_tiny``'s
   backbone weights (``scripts/train_inverse_tiny.py`` re-makes those from scratch).
3. With ``--export``: the chain's newest EMA weights as a pipeline folder, its ``training.json`` (the whole chain) and
   ``train_stats.json`` (train-set mean roughness / metallic: the constant baseline of ``eval inverse``).

Re-making the shipped model from scratch, one command (hours on 2 cores; see its training.json for how long):
``python scripts/train_inverse_v2.py --from-scratch --run out/chains/inverse_v2_remake --replay
data/models/inverse_v2/training.json --total-steps STEPS --export out/inverse_v2_remake`` with STEPS the recorded
``recipe.total_steps``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["configs/trainer/cpu_train.yaml", "configs/experiment/inverse_v2.yaml"]
TRAIN_SET = "synth_train2_128"
SYNTH_ARGS = ["--split", "train2", "--clips", "512", "--frames", "8", "--size", "128x128", "--spp", "16",
              "--workers", "2", "--no-progress"]


def ensure_data(data: Path) -> Path:
    """Make (or finish) the train2 set; return its folder."""
    folder = data / TRAIN_SET
    cmd = [sys.executable, "-m", "neural_render", "synth", "--out", str(folder), *SYNTH_ARGS]
    # re-running synth on its own folder skips the finished clips (resumable)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--run", default="out/chains/inverse_v2", help="chain run folder")
    parser.add_argument("--data", default="data_cache", help="folder of the synthetic datasets")
    parser.add_argument("--minutes", type=float, default=90.0, help="wall-clock minutes of this call's segment")
    parser.add_argument("--total-steps", type=int, default=6000, help="optimizer steps of the whole chain")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--export", help="export the newest weights here (pipeline folder + training.json)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--from-scratch", action="store_true", help="new run folder, segments until --total-steps")
    mode.add_argument("--until-done", action="store_true", help="continue the chain until --total-steps")
    parser.add_argument("--replay", help="end segments where this training.json's segments ended")
    parser.add_argument("--skip-data", action="store_true", help="do not check / make the train set")
    args = parser.parse_args()

    data = Path(args.data)
    train_dir = data / TRAIN_SET if args.skip_data else ensure_data(data)
    cmd = [sys.executable, str(ROOT / "scripts" / "train_chain.py"), "--run", args.run,
           *[a for c in CONFIGS for a in ("--config", c)], "--total-steps", str(args.total_steps),
           "--minutes", str(args.minutes), "--threads", str(args.threads),
           "--data.init_args.train_dir", str(train_dir)]
    cmd += ["--from-scratch"] if args.from_scratch else ["--until-done"] if args.until_done else []
    cmd += ["--replay", args.replay] if args.replay else []
    cmd += ["--export", args.export] if args.export else []
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code == 0 and args.export:
        from neural_render.evaluation.inverse import TRAIN_STATS, compute_train_stats

        stats = compute_train_stats([train_dir])
        (Path(args.export) / TRAIN_STATS).write_text(json.dumps(dict(stats, train_data=[str(train_dir)]), indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
