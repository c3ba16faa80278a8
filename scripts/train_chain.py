#!/usr/bin/env python
"""Train a model as a chain of resumable segments that may span several sessions (issue #23).

    python scripts/train_chain.py --run RUN_DIR --config A.yaml [--config B.yaml ...] [--data.init_args.X V ...]
                                  --total-steps N --minutes M [--threads 1] [--seed 0] [--checkpoint-minutes 10]
                                  [--export DIR] [--from-scratch | --until-done] [--replay training.json]

* first call: starts ``neural-render fit`` (configs + pass-through overrides, ``--trainer.max_steps N``,
  ``--trainer.max_time`` M minutes, ``--seed_everything``) in a subprocess; its checkpoint is
  ``RUN_DIR/checkpoints/last.ckpt`` (written atomically every ``--checkpoint-minutes``, on SIGTERM and at the
  segment's end: a killed session loses at most that many minutes), Lightning logs in ``RUN_DIR/lightning_logs``;
* later calls with the same RUN_DIR: refused (exit 2, naming what differs) when configs (paths or contents),
  overrides, total steps, threads or seed differ from the recorded recipe; otherwise one more segment of M minutes
  from the last checkpoint (``--ckpt_path``), until N steps are done (then nothing is trained);
* ``RUN_DIR/training.json``: the recipe and every segment (start/end step, wall and CPU seconds, stopped_by
  max_time / max_steps / killed / failed, git commit, host, dates); a segment whose runner was killed is closed by
  the next call at the newest checkpoint's step;
* ``--export DIR``: the newest weights (EMA where the task has one) as a pipeline folder, exported by
  ``neural-render fit --ckpt_path ... --export_dir DIR`` itself, with the whole chain as ``DIR/training.json``;
* ``--from-scratch``: a NEW run folder, segments back to back until N steps in this one call (how a shipped model
  is re-made by someone with the time); ``--until-done`` does the same for an existing chain;
  ``--replay FILE`` (with either) ends segments at the steps FILE's segments ended at (a recorded chain's
  boundaries; see neural_render/training_chain.py for why boundaries matter to the result).

Exit codes: 0 (segment ran or chain already done), 1 (a segment failed or made no progress), 2 (bad input, a
changed recipe, a run folder in use), 143 (terminated; the record says where it got to).
What a resume preserves and what it does not (measured): neural_render/training_chain.py's module doc.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neural_render import training_chain as chain
from neural_render.errors import NeuralRenderError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False,
                                     epilog="Any other --group.key VALUE arguments go to neural-render fit.")
    parser.add_argument("--run", required=True, help="run folder (checkpoints, logs, training.json)")
    parser.add_argument("--config", action="append", required=True, help="fit config, in order (repeatable)")
    parser.add_argument("--total-steps", type=int, required=True, help="optimizer steps of the whole chain")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock minutes of this call's segment")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed_everything (default 0)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="save last.ckpt every this many wall-clock minutes (default 10)")
    parser.add_argument("--export", help="export the newest weights (pipeline folder + training.json) here")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--from-scratch", action="store_true",
                      help="new run folder; segments back to back until --total-steps")
    mode.add_argument("--until-done", action="store_true", help="continue a chain back to back until --total-steps")
    parser.add_argument("--replay", help="end segments at the steps this training.json's segments ended at")
    # tests: segments of a fixed number of steps, and a checkpoint every K steps (deterministic, fast)
    parser.add_argument("--segment-steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-every-steps", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def run(args, overrides: list[str]) -> int:
    from neural_render.io.output import output_lock

    bad = [a for a in overrides if a.startswith("-") and not a.startswith("--")]
    if bad:
        raise NeuralRenderError(f"unknown arguments {bad}")
    run_dir = Path(args.run)
    recipe = chain.make_recipe(args.config, overrides, args.total_steps, args.threads, args.seed, args.minutes,
                               args.checkpoint_minutes)
    boundaries = []
    if args.replay:
        replay = json.loads(Path(args.replay).read_text())
        boundaries = sorted({s["end_step"] for s in replay.get("segments", []) if s.get("end_step")})
    run_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(run_dir / chain.RECORD, "train-chain"):
        record = chain.read_record(run_dir)
        if record is None:
            if (run_dir / chain.CKPT_DIR / chain.LAST).exists():
                raise NeuralRenderError("the run folder has a checkpoint but no training.json; choose a new --run",
                                        run_dir)
            record = {"format": chain.FORMAT, "created": chain.now(), "recipe": recipe, "segments": [],
                      "global_step": 0, "done": False}
        else:
            if args.from_scratch:
                raise NeuralRenderError("--from-scratch needs a new run folder; this one holds a chain (continue it "
                                        "without --from-scratch, or with --until-done)", run_dir)
            diffs = chain.recipe_differences(record["recipe"], recipe)
            if diffs:
                raise chain.ChainMismatch("this call's recipe differs from the chain's recorded one: "
                                          + "; ".join(diffs), run_dir / chain.RECORD)
            record["recipe"].update(minutes=recipe["minutes"], checkpoint_minutes=recipe["checkpoint_minutes"])
            chain.close_killed_segment(run_dir, record)
        chain.write_record(run_dir / chain.RECORD, record)
        code = 0
        while True:
            _, step = chain.newest_checkpoint(run_dir)
            if step >= recipe["total_steps"]:
                print(f"chain done: {step} of {recipe['total_steps']} steps", flush=True)
                break
            target = step + args.segment_steps if args.segment_steps > 0 else None
            if boundaries:
                target = next((b for b in boundaries if b > step), target)
            entry = chain.run_segment(run_dir, record, target_step=target,
                                      checkpoint_every_steps=args.checkpoint_every_steps,
                                      log=lambda m: print(m, flush=True))
            if entry["stopped_by"] == "failed" or entry["end_step"] <= step:
                print(f"segment {entry['index']} {entry['stopped_by']} without progress; stopping", file=sys.stderr)
                code = 1
                break
            if not (args.from_scratch or args.until_done):
                break
        if args.export and code == 0:
            chain.export(run_dir, record, Path(args.export), log=lambda m: print(m, flush=True))
    return code


def main(argv: list[str] | None = None) -> int:
    args, overrides = build_parser().parse_known_args(argv)
    try:
        return run(args, overrides)
    except NeuralRenderError as err:
        print(f"train_chain: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
