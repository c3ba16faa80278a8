#!/usr/bin/env python
"""Make, continue or re-make the generator-2 inverse model ``data/models/inverse_v2`` (issue #23): two stages.

    python scripts/train_inverse_v2.py [--minutes 60] [--stage1-steps 2205] [--stage2-steps 2000]
                                       [--run out/chains/inverse_v2] [--data data_cache] [--threads 1]
                                       [--export data/models/inverse_v2] [--until-done] [--replay TRAINING_JSON]

1. Data: ``<data>/synth_train2_128`` (``neural-render synth --split train2 --clips 512 --frames 8 --size 128x128
   --spp 16``; generator 2, neural_render/synth/splits.py) is made when missing or unfinished (finished clips are
   skipped). Validation and test sets are not read here (``scripts/score_shipped_models.py`` scores them).
2. Stage 1, chain ``<run>/stage1``: ``configs/trainer/cpu_train.yaml`` + ``configs/experiment/inverse_v2.yaml`` (64-px
   crops of 64..128-px regions; backbone initialised from ``data/models/inverse_tiny``, which
   ``scripts/train_inverse_tiny.py`` re-makes from scratch) for ``--stage1-steps``; exported to
   ``<run>/stage1_export``.
3. Stage 2, chain ``<run>/stage2``: the same + ``configs/experiment/inverse_v2_stage2.yaml`` (whole 128-px frames)
   from the stage-1 export's backbone, for ``--stage2-steps``.
Each call trains one segment of ``--minutes`` of the first unfinished stage (a later session continues it; the
chains' ``training.json`` record every segment); ``--until-done`` runs segments back to back until both stages are
done; ``--replay`` takes the shipped model's ``training.json`` and ends every segment where the recorded one ended.
4. With ``--export`` (when stage 2 has a checkpoint): stage 2's newest EMA weights as a pipeline folder, with a
   ``training.json`` holding stage 2's chain, stage 1's chain (``previous_stages``) and inverse_tiny's record
   (``initialised_from``), and ``train_stats.json`` (train-set mean roughness / metallic: the constant baseline of
   ``eval inverse``).

The shipped model's chains were run as ``out/chains/inverse_v2`` (stage 1) and ``out/chains/inverse_v2_stage2``;
its ``training.json`` names them. Re-making it from scratch, one command (about 1.5 h on 2 cores plus the data):
``python scripts/train_inverse_v2.py --until-done --run out/chains/inverse_v2_remake --replay
data/models/inverse_v2/training.json --stage1-steps S1 --stage2-steps S2 --export out/inverse_v2_remake`` with S1, S2
the recorded stages' ``global_step``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from neural_render.training_chain import chain_progress, run_chain_script

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = ["configs/trainer/cpu_train.yaml", "configs/experiment/inverse_v2.yaml"]
STAGE2 = STAGE1 + ["configs/experiment/inverse_v2_stage2.yaml"]
TRAIN_SET = "synth_train2_128"
SYNTH_ARGS = ["--split", "train2", "--clips", "512", "--frames", "8", "--size", "128x128", "--spp", "16",
              "--workers", "2", "--no-progress"]


def ensure_data(data: Path) -> Path:
    """Make (or finish) the train2 set; return its folder (re-running synth on it skips the finished clips)."""
    folder = data / TRAIN_SET
    subprocess.run([sys.executable, "-m", "neural_render", "synth", "--out", str(folder), *SYNTH_ARGS],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder


def run_chain(run: Path, configs: list[str], steps: int, args, extra: list[str], replay: dict | None,
              export: Path | None = None) -> int:
    return run_chain_script(run, configs, steps, minutes=args.minutes, threads=args.threads, extra=extra,
                            until_done=args.until_done, export=export, replay=replay)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--run", default="out/chains/inverse_v2", help="folder of the two stages' chains")
    parser.add_argument("--data", default="data_cache", help="folder of the synthetic datasets")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock minutes of this call's segment")
    parser.add_argument("--stage1-steps", type=int, default=2205, help="optimizer steps of stage 1")
    parser.add_argument("--stage2-steps", type=int, default=2000, help="optimizer steps of stage 2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--export", help="export stage 2's newest weights here (pipeline folder + training.json)")
    parser.add_argument("--until-done", action="store_true", help="segments back to back until both stages are done")
    parser.add_argument("--replay", help="a shipped training.json: end segments where its segments ended")
    parser.add_argument("--skip-data", action="store_true", help="do not check / make the train set")
    args = parser.parse_args()

    data, root = Path(args.data), Path(args.run)
    train_dir = data / TRAIN_SET if args.skip_data else ensure_data(data)
    shipped = json.loads(Path(args.replay).read_text()) if args.replay else None
    replay1 = (shipped or {}).get("previous_stages", [None])[0]
    data_arg = ["--data.init_args.train_dir", str(train_dir)]
    stage1, stage1_export, stage2 = root / "stage1", root / "stage1_export", root / "stage2"

    step, done = chain_progress(stage1)
    if step < args.stage1_steps and not done:
        code = run_chain(stage1, STAGE1, args.stage1_steps, args, data_arg, replay1, export=stage1_export)
        if code or not args.until_done:
            return code
    if not (stage1_export / "model_index.json").is_file():
        code = run_chain(stage1, STAGE1, args.stage1_steps, args, data_arg, replay1, export=stage1_export)
        if code:
            return code
    init = ["--backbone.init_args.pretrained_dir", str(stage1_export / "backbone")]
    code = run_chain(stage2, STAGE2, args.stage2_steps, args, data_arg + init, shipped,
                     export=Path(args.export) if args.export else None)
    if code == 0 and args.export:
        finish_export(Path(args.export), stage1, train_dir)
    return code


def finish_export(out: Path, stage1: Path, train_dir: Path) -> None:
    """Nest stage 1's chain and inverse_tiny's record into the export's training.json; write train_stats.json."""
    from neural_render.evaluation.inverse import TRAIN_STATS, compute_train_stats
    from neural_render.io.atomic import atomic_path

    record = json.loads((out / "training.json").read_text())
    record["train_data"] = [str(train_dir)]
    record["previous_stages"] = [json.loads((stage1 / "training.json").read_text())]
    record["initialised_from"] = {"model": "data/models/inverse_tiny", "training": json.loads(
        (ROOT / "data" / "models" / "inverse_tiny" / "training.json").read_text())}
    with atomic_path(out / "training.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    with atomic_path(out / TRAIN_STATS) as tmp:
        Path(tmp).write_text(json.dumps(compute_train_stats([train_dir]), indent=1))


if __name__ == "__main__":
    sys.exit(main())
