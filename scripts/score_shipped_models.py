#!/usr/bin/env python
"""Score every shipped model on a split under the evaluation protocol (issue #22); README tables come from the JSONs.

    python scripts/score_shipped_models.py --split val  [--data data_cache] [--clips 24] [--threads 1]
    python scripts/score_shipped_models.py --split test [--data data_cache]       # once per shipped model
    python scripts/score_shipped_models.py --split val2 | val2_table | test2 | test2_table   # generator 2 (#23)
    python scripts/score_shipped_models.py --split real_val | real_test                      # real footage (#26)

Makes what it needs with the data engine (resumable; each a folder under ``--data``):
  synth_split_<split>_64          --split <split>, 24 clips x 8 frames, 64x64, 16 spp: the inverse model's input
  synth_split_<split>_64_spp256   the same scenes at 256 spp: the converged reference of eval forward / relight
  synth_split_<split>_64_spp256_relit   the same scenes under the next env map of the split (eval relight)
  insert_split_<split>_64         scripts/make_insert_eval_data.py --split <split> (eval insert)
then writes, beside each model, ``eval_<split>_<kind>.json``:
  data/models/inverse_tiny/eval_<split>_inverse.json
  data/models/forward_tiny/eval_<split>_forward.json, eval_<split>_relight.json
  data/models/forward_cache_tiny/eval_<split>_insert.json
Val is for choices and may be re-run freely. TEST: every scoring is appended to the model's ``test_scorings.jsonl``
by the eval command itself; this script refuses to score a model on test again when its log already holds that
kind of scoring, unless ``--again "why"`` (the reason is logged in the same file).
Generator-2 splits (issue #23; neural_render/synth/splits.py): ``synth_<split>_128`` (48 clips x 8 frames, 128x128,
16 spp) and ``eval inverse`` of every shipped inverse model (``inverse_v2`` at its native 128 px and ``inverse_tiny``
at its native 64 px, the earlier model as a baseline) -> ``eval_<split>_inverse.json`` beside each; test2 /
test2_table skip a model whose log already holds a scoring on that set (exit 2 when no model is left).
Real footage (issue #26): ``real_val`` / ``real_test`` score the Realiz3D model (``data/models/forward_real`` when
shipped, else the plain ``forward_tiny``) with the real LoRA ``data/models/forward_real_lora`` beside it on
``real_64_labelled/<val|test>`` (scripts/make_real_set.py; made when missing) -> ``eval_<val|test>_forward_real.json``,
and the real-trained model on the synthetic ``synth_split_<val|test>_64_spp256`` with the plain ``forward_tiny`` as the
reference (what the real training costs on synthetic clips) -> ``eval_<val|test>_forward.json``, both beside
``forward_real`` (else ``forward_real_lora``); real_test refuses a second scoring as test does.
Then run ``neural-render report --readme README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "data" / "models"


def run(*argv: str) -> None:
    cmd = [sys.executable, "-m", "neural_render", *argv]
    print("+ neural-render " + " ".join(argv), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


V2_SPLITS = ("val2", "val2_table", "test2", "test2_table")
V2_INVERSE_MODELS = ("inverse_v2", "inverse_tiny")


def already_scored(model: Path, kind: str, data: Path | None = None) -> bool:
    """Whether the model's test log holds an ``eval <kind>`` scoring (on ``data``, by folder name, when given)."""
    log = model / "test_scorings.jsonl"
    if not log.is_file():
        return False
    entries = [json.loads(line) for line in log.read_text().splitlines() if line]
    return any(e.get("command") == f"eval {kind}" and (data is None or Path(e.get("data", "")).name == data.name)
               for e in entries)


def score_v2(args) -> int:
    """Generator-2 split: make ``synth_<split>_128`` and score every shipped inverse model on it (module doc)."""
    folder = Path(args.data) / f"synth_{args.split}_128"
    models = [MODELS / name for name in V2_INVERSE_MODELS if (MODELS / name / "model_index.json").is_file()]
    if args.split.startswith("test"):
        done = [m for m in models if already_scored(m, "inverse", folder)]
        for model in done:
            print(f"skipped: {model.name} was already scored on {folder.name} (test_scorings.jsonl); a test set is "
                  "scored once per model", file=sys.stderr)
        models = [m for m in models if m not in done]
        if not models:
            return 2
    run("synth", "--out", str(folder), "--split", args.split, "--clips", "48", "--frames", "8", "--size", "128x128",
        "--spp", "16", "--workers", "2", "--no-progress")
    for model in models:
        run("eval", "inverse", "--data", str(folder), "--model", str(model), "--threads", str(args.threads),
            "--overwrite", "--json", str(model / f"eval_{args.split}_inverse.json"))
    print("now: neural-render report --readme README.md")
    return 0


REAL_SPLITS = ("real_val", "real_test")


def score_real(args) -> int:
    """Real-footage split (module doc). The e_real / e_synthetic rows come from ``forward_real`` when it is shipped,
    else from the plain ``forward_tiny`` (its shifters); the JSONs go beside ``forward_real`` when shipped, else
    beside ``forward_real_lora``."""
    data, split = Path(args.data), args.split.removeprefix("real_")
    lora, plain = MODELS / "forward_real_lora", MODELS / "forward_tiny"
    realiz3d = MODELS / "forward_real"
    model = realiz3d if (realiz3d / "model_index.json").is_file() else plain
    owner = realiz3d if model == realiz3d else lora
    real = data / "real_64_labelled" / split
    synthetic = data / f"synth_split_{split}_64_spp256"
    if split == "test":
        done = [k for k in ("forward --real", "forward") if already_scored(owner, k)]
        if done and not args.again:
            print(f"refused: {owner.name} was already scored on test for {done} (test_scorings.jsonl); pass --again "
                  "\"reason\" to score it again (logged)", file=sys.stderr)
            return 2
    if not (real / "manifest.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_real_set.py")], check=True, cwd=ROOT)
    run("synth", "--out", str(synthetic), "--spp", "256", "--split", split, "--clips", str(args.clips), "--frames",
        "8", "--size", "64x64", "--no-progress")
    run("eval", "forward", "--real", "--data", str(real), "--model", str(model), "--lora-model", str(lora),
        "--overwrite", "--json", str(owner / f"eval_{split}_forward_real.json"))
    run("eval", "forward", "--data", str(synthetic), "--model", str(owner), "--reference-model", str(plain),
        "--overwrite", "--json", str(owner / f"eval_{split}_forward.json"))
    print("now: neural-render report --readme README.md")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("val", "test", *V2_SPLITS, *REAL_SPLITS), required=True)
    parser.add_argument("--data", default=str(ROOT / "data_cache"))
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--again", default=None, help="test only: score again although the log has a scoring, because")
    parser.add_argument("--only", nargs="*", default=None, choices=("inverse", "forward", "relight", "insert"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.split in V2_SPLITS:
        return score_v2(args)
    if args.split in REAL_SPLITS:
        return score_real(args)
    data, split = Path(args.data), args.split
    kinds = args.only or ["inverse", "forward", "relight", "insert"]
    owners = {"inverse": MODELS / "inverse_tiny", "forward": MODELS / "forward_tiny",
              "relight": MODELS / "forward_tiny", "insert": MODELS / "forward_cache_tiny"}
    if split == "test":
        done = [k for k in kinds if already_scored(owners[k], k)]
        if done and not args.again:
            print(f"refused: the test split was already scored for {done} (see test_scorings.jsonl); pass --again "
                  "\"reason\" to score it again (logged)", file=sys.stderr)
            return 2
        if done:
            for k in done:
                with open(owners[k] / "test_scorings.jsonl", "a") as fh:
                    fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": f"again {k}",
                                         "reason": args.again}) + "\n")
    common = ["--split", split, "--clips", str(args.clips), "--frames", "8", "--size", "64x64", "--no-progress"]
    base = data / f"synth_split_{split}_64"
    ref = data / f"synth_split_{split}_64_spp256"
    if "inverse" in kinds:
        run("synth", "--out", str(base), "--spp", "16", *common)
    if {"forward", "relight"} & set(kinds):
        run("synth", "--out", str(ref), "--spp", "256", *common)
    threads = ["--threads", str(args.threads)]
    if "inverse" in kinds:
        run("eval", "inverse", "--data", str(base), "--model", str(owners["inverse"]), *threads, "--overwrite",
            "--json", str(owners["inverse"] / f"eval_{split}_inverse.json"))
    if "forward" in kinds:
        run("eval", "forward", "--data", str(ref), "--model", str(owners["forward"]), "--overwrite",
            "--json", str(owners["forward"] / f"eval_{split}_forward.json"))
    if "relight" in kinds:
        run("eval", "relight", "--data", str(ref), "--relight-data", str(ref) + "_relit", "--model",
            str(owners["relight"]), "--inverse-model", str(owners["inverse"]), "--overwrite",
            "--json", str(owners["relight"] / f"eval_{split}_relight.json"))
    if "insert" in kinds:
        insert_data = data / f"insert_split_{split}_64"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_insert_eval_data.py"), "--split", split,
                        "--out", str(insert_data), "--clips", str(args.clips)], check=True, cwd=ROOT)
        run("eval", "insert", "--data", str(insert_data), "--model", str(owners["insert"]), "--base-model",
            str(owners["forward"]), "--inverse-model", str(owners["inverse"]), "--overwrite",
            "--json", str(owners["insert"] / f"eval_{split}_insert.json"))
    print("now: neural-render report --readme README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
