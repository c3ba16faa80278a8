#!/usr/bin/env python
"""Make, continue or re-make the forward models trained with REAL footage (issue #26): Realiz3D and a real LoRA.

    python scripts/train_forward_real.py [--run out/chains] [--minutes 20] [--threads 1]
                                         [--stage1-steps 1000] [--stage2-steps 1000] [--lora-steps 1200]
                                         [--only realiz3d|lora] [--until-done] [--replay-dir DIR]
                                         [--export-realiz3d data/models/forward_real]
                                         [--export-lora data/models/forward_real_lora]

Data (made when missing): the synthetic train split at 64 px (``scripts/make_synth_datasets.sh``' synth_train_64
line) and the real-footage set auto-labelled by data/models/inverse_v2 (``scripts/make_real_set.py``; TRAIN split
only: tree.avi, vtest.avi, the train photos). Both start from the shipped plain forward model's backbone
(data/models/forward_tiny/backbone).

* Realiz3D, two chains (``scripts/train_chain.py``; each call trains one segment of ``--minutes`` of the first
  unfinished chain, a later session continues it):
  stage 1 ``<run>/forward_real_stage1``: backbone frozen, fresh shifters trained on real + synthetic with the control
  dropped (configs/task/forward_stage1.yaml + configs/experiment/forward_real.yaml); exported to
  ``<run>/forward_real_stage1_export``.
  stage 2 ``<run>/forward_real_stage2``: shifters frozen (stage 1's), backbone trained on both; real samples use
  e_real with early-block reassignment and layer-aware freezing and keep their auto-labelled G-buffers half of the
  time (configs/task/forward_stage2.yaml + configs/experiment/forward_real_stage2.yaml); exported to
  ``--export-realiz3d``.
* Real LoRA ``<run>/forward_real_lora_mixed`` (DiffusionRenderer's alternative, the shipped
  data/models/forward_real_lora): a rank-8 LoRA on the frozen plain model, trained on real clips (lighting absent)
  and synthetic clips (lighting present) half and half (configs/experiment/forward_real_lora.yaml +
  forward_real_lora_mixed.yaml); exported to ``--export-lora``. ``--lora-real-only``: real clips only (chain
  ``<run>/forward_real_lora``).

Measured on val (the real val set and synth_split_val_64_spp256), 1200 steps each: the real-only LoRA re-renders
real val clips at 15.33 dB (forward_tiny: 12.23; forward_real_lora_mixed.yaml's comment compares with 14.34 dB, the
e_synthetic row of a Realiz3D candidate) but lights the synthetic val clips at 16.16 dB (forward_tiny: 26.69); the
mixed one gives 14.47 and 25.44 dB and is the shipped one (it can still light a scene, which relight needs).
Neither Realiz3D recipe is shipped (their measured results are in configs/experiment/forward_real_stage2*.yaml);
``--joint-shifters`` is the stage-2 variant that trains the shifters too.

Each export's ``training.json`` holds its chain, the earlier stage's chain (``previous_stages``) and the plain
model's own record (``initialised_from``). Re-making the shipped models from scratch, one command:
``python scripts/train_forward_real.py --until-done --run out/remake --replay-dir data/models`` (the recorded
segment boundaries; steps from the shipped records) with ``--export-*`` pointing at new folders; the shipped LoRA
alone: ``--only lora``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from neural_render.training_chain import chain_progress, run_chain_script

ROOT = Path(__file__).resolve().parents[1]
BASE = ["configs/trainer/cpu_train.yaml"]
STAGE1 = BASE + ["configs/data/synth_forward_real.yaml", "configs/task/forward.yaml",
                 "configs/task/forward_stage1.yaml", "configs/experiment/forward_real.yaml"]
STAGE2 = BASE + ["configs/data/synth_forward_real.yaml", "configs/task/forward.yaml",
                 "configs/task/forward_stage2.yaml", "configs/experiment/forward_real.yaml",
                 "configs/experiment/forward_real_stage2.yaml"]
STAGE2_JOINT = STAGE2 + ["configs/experiment/forward_real_stage2_joint.yaml"]
STAGE1_ANCHOR = STAGE1 + ["configs/experiment/forward_real_stage1_anchor.yaml"]
SHIFTERS_CONTROL = BASE + ["configs/data/synth_forward_real.yaml", "configs/task/forward.yaml",
                           "configs/experiment/forward_real.yaml",
                           "configs/experiment/forward_real_shifters_control.yaml"]
LORA = BASE + ["configs/data/synth_forward.yaml", "configs/task/forward.yaml",
               "configs/experiment/forward_real_lora.yaml"]
LORA_MIXED = BASE + ["configs/data/synth_forward_real.yaml", "configs/task/forward.yaml",
                     "configs/experiment/forward_real_lora.yaml", "configs/experiment/forward_real_lora_mixed.yaml"]
PLAIN = ROOT / "data" / "models" / "forward_tiny"


def ensure_data() -> None:
    """The synthetic train split and the labelled real set (each command skips what is already finished)."""
    if not (ROOT / "data_cache" / "synth_train_64" / "synth.json").is_file():
        subprocess.run([sys.executable, "-m", "neural_render", "synth", "--out", "data_cache/synth_train_64",
                        "--envmaps", "train", "--seed", "1000", "--clips", "512", "--frames", "8", "--size", "64x64",
                        "--spp", "16", "--workers", "2", "--no-progress"], check=True, cwd=ROOT)
    if not (ROOT / "data_cache" / "real_64_labelled" / "test" / "manifest.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_real_set.py")], check=True, cwd=ROOT)


def run_chain(run: Path, configs: list[str], steps: int, args, extra: list[str], replay: dict | None,
              export: Path | None = None) -> int:
    return run_chain_script(run, configs, steps, minutes=args.minutes, threads=args.threads, extra=extra,
                            until_done=args.until_done, export=export, replay=replay)


def finish_export(out: Path, previous: Path | None) -> None:
    """Nest the earlier stage's chain and the plain model's record into the export's training.json."""
    from neural_render.io.atomic import atomic_path

    record = json.loads((out / "training.json").read_text())
    record["train_data"] = ["data_cache/synth_train_64", "data_cache/real_64_labelled/train"]
    record["train_data_note"] = ("real: scripts/make_real_set.py (opencv-doc train sources), G-buffers by "
                                 "data/models/inverse_v2, no env map")
    record["training_resolution"] = 64
    if previous is not None:
        record["previous_stages"] = [json.loads((previous / "training.json").read_text())]
    record["initialised_from"] = {"model": "data/models/forward_tiny",
                                  "training": json.loads((PLAIN / "training.json").read_text())}
    with atomic_path(out / "training.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))


def _replay(folder: Path | None, previous: bool = False) -> dict | None:
    if folder is None or not (folder / "training.json").is_file():
        return None
    record = json.loads((folder / "training.json").read_text())
    return record.get("previous_stages", [None])[0] if previous else record


def realiz3d_anchored(args, root: Path) -> int:
    """One chain, e_synthetic anchored at zero, exported to ``--export-realiz3d``: ``--anchor``: the paper's stage 1
    (control dropped, configs/experiment/forward_real_stage1_anchor.yaml); ``--shifters-control``: the shifters
    trained with the control kept (configs/experiment/forward_real_shifters_control.yaml; the shipped
    data/models/forward_real, with ``--anchor-lr 1.0e-1``)."""
    shipped = Path(args.replay_dir) / "forward_real" if args.replay_dir else None
    export = Path(args.export_realiz3d)
    extra = ["--model.init_args.lr", args.anchor_lr] if args.anchor_lr else []
    configs, run = ((SHIFTERS_CONTROL, "forward_real_shifters_control") if args.shifters_control
                    else (STAGE1_ANCHOR, "forward_real_stage1_anchor"))
    code = run_chain(root / run, configs, args.stage1_steps, args, extra, _replay(shipped), export)
    if code == 0 and (export / "training.json").is_file():
        finish_export(export, None)
    return code


def realiz3d(args, root: Path) -> int:
    if args.anchor or args.shifters_control:
        return realiz3d_anchored(args, root)
    stage1, stage1_export, stage2 = (root / "forward_real_stage1", root / "forward_real_stage1_export",
                                     root / "forward_real_stage2")
    shipped = Path(args.replay_dir) / "forward_real" if args.replay_dir else None
    step, done = chain_progress(stage1)
    if (step < args.stage1_steps and not done) or not (stage1_export / "model_index.json").is_file():
        code = run_chain(stage1, STAGE1, args.stage1_steps, args, [], _replay(shipped, True), stage1_export)
        if code or not args.until_done:
            return code
    extra = ["--backbone.init_args.pretrained_dir", str(stage1_export / "backbone"),
             "--model.init_args.domain_shifter.pretrained", str(stage1_export / "domain_shifters")]
    export = Path(args.export_realiz3d)
    configs = STAGE2_JOINT if args.joint_shifters else STAGE2
    code = run_chain(stage2, configs, args.stage2_steps, args, extra, _replay(shipped), export)
    if code == 0 and (export / "training.json").is_file():
        finish_export(export, stage1)
    return code


def lora(args, root: Path) -> int:
    shipped = Path(args.replay_dir) / "forward_real_lora" if args.replay_dir else None
    export = Path(args.export_lora)
    configs, run = (LORA, "forward_real_lora") if args.lora_real_only else (LORA_MIXED, "forward_real_lora_mixed")
    code = run_chain(root / run, configs, args.lora_steps, args, [], _replay(shipped), export)
    if code == 0 and (export / "training.json").is_file():
        finish_export(export, None)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--run", default="out/chains", help="folder of the chains")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock minutes of this call's segment")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stage1-steps", type=int, default=1000)
    parser.add_argument("--stage2-steps", type=int, default=1000)
    parser.add_argument("--lora-steps", type=int, default=1200)
    parser.add_argument("--only", choices=("realiz3d", "lora"), default=None)
    parser.add_argument("--lora-real-only", action="store_true",
                        help="train the LoRA on real clips only (without configs/experiment/forward_real_lora_mixed"
                             ".yaml; forgets the lighting condition, see that file)")
    parser.add_argument("--anchor", action="store_true",
                        help="Realiz3D stage 1 only with e_synthetic anchored at zero (configs/experiment/"
                             "forward_real_stage1_anchor.yaml)")
    parser.add_argument("--shifters-control", action="store_true",
                        help="anchored shifters trained with the control kept, backbone frozen (configs/experiment/"
                             "forward_real_shifters_control.yaml): the shipped forward_real")
    parser.add_argument("--anchor-lr", default=None,
                        help="with --anchor: override its learning rate (as written, e.g. 3.0e-2)")
    parser.add_argument("--joint-shifters", action="store_true",
                        help="stage 2 trains the shifters with the backbone (configs/experiment/"
                             "forward_real_stage2_joint.yaml) instead of freezing them")
    parser.add_argument("--until-done", action="store_true", help="segments back to back until the chains are done")
    parser.add_argument("--replay-dir", default=None, help="folder holding shipped forward_real[_lora]/training.json")
    parser.add_argument("--export-realiz3d", default=str(ROOT / "data" / "models" / "forward_real"))
    parser.add_argument("--export-lora", default=str(ROOT / "data" / "models" / "forward_real_lora"))
    # the shipped LoRA: python scripts/train_forward_real.py --only lora --until-done (1200 steps, about 15 min)
    args = parser.parse_args()
    ensure_data()
    root = Path(args.run)
    codes = []
    if args.only in (None, "lora"):
        codes.append(lora(args, root))
    if args.only in (None, "realiz3d"):
        codes.append(realiz3d(args, root))
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
