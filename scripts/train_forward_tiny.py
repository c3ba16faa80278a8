#!/usr/bin/env python
"""Train and ship the tiny forward renderer: ``data/models/forward_tiny`` (CPU, about an hour).

    python scripts/train_forward_tiny.py [--minutes 45] [--data data_cache] [--out data/models/forward_tiny]
                                         [--realiz3d-minutes 0] [--realiz3d-from DIR] [--init-from DIR]

1. Data: ``<data>/synth_train_64`` rendered with the TRAIN env maps by scripts/make_synth_datasets.sh (run here when
   the folder is missing; the held-out set uses the test env maps and is never read by this script).
2. ``neural-render fit`` with configs/trainer/cpu_smoke.yaml + configs/data/synth_forward.yaml +
   configs/task/forward.yaml, stopped after ``--minutes`` of CPU time of this process (the machine may be shared) or
   ``--max-steps`` (4 hours of wall clock at most); logs in ``--log-dir`` (default out/forward_tiny).
   ``--init-from DIR`` fine-tunes the backbone of an exported forward model (e.g. a previous forward_tiny) instead of
   starting from random weights; that model's own training.json is kept under "init_from_training", so the whole
   chain of runs behind the exported weights stays on record.
3. Export (EMA weights) to ``--out`` (pipeline folder, safetensors).
4. Optional Realiz3D (``--realiz3d-minutes`` > 0): "real" clips = train clips relabelled by the shipped inverse model
   (data/models/inverse_tiny; degraded exact G-buffers when it is missing) in ``<data>/forward_real_64``; stage 1
   (shifters on real + synthetic, control dropped, backbone frozen) then stage 2 (backbone on both, shifters frozen,
   layer-aware freezing); the stage-2 model is exported to ``--out`` instead. ``--realiz3d-from DIR`` skips step 2
   and starts the two Realiz3D stages from the exported plain model in DIR (e.g. the shipped forward_tiny); DIR's
   training.json is kept under "plain_training".
   ``--realiz3d-stages 1`` exports the stage-1 model (trained shifters, plain backbone) instead: with "real" clips
   that are path-traced renders too, stage 2 (control dropped on them) cost 0.4 dB on the synthetic held-out set
   (measured: 26.77 vs 27.19 dB), so the shipped model stops after stage 1. Each stage gets half of
   ``--realiz3d-minutes``.
5. Validation (unless ``--skip-eval``): ``neural-render eval forward`` and ``eval relight`` on
   ``<data>/synth_test_64_spp256`` (since issue #22 a VALIDATION set: split.json's "val" maps; 256-spp reference; made
   by scripts/make_synth_datasets.sh), relighting under the next env map (``<data>/synth_test_64_spp256_env2``,
   rendered by the eval when missing) -> ``<logs>/eval_val_forward.json``, ``<logs>/eval_val_relight.json``. The
   shipped JSONs come from scripts/score_shipped_models.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_train_data(data: Path) -> Path:
    train = data / "synth_train_64"
    if not (train / "synth.json").is_file():
        print(f"train data missing: running scripts/make_synth_datasets.sh {data}", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "make_synth_datasets.sh"), str(data)], check=True, cwd=ROOT)
    return train


def make_real_clips(train: Path, real: Path, count: int) -> str:
    """Real-domain stand-ins: train clips relabelled by the shipped inverse model (else degraded G-buffers)."""
    from neural_render.data.degraded_real import make_degraded_real_clips

    inverse = ROOT / "data" / "models" / "inverse_tiny"
    if (inverse / "model_index.json").is_file():
        import hashlib
        import shutil
        import tempfile

        from neural_render.data.clip_dataset import find_clips
        from neural_render.io.atomic import atomic_path

        # labels of another inverse model (or other settings) are never reused: autolabel resumes finished clips
        weights = sorted(inverse.rglob("*.safetensors"))
        stamp = {"model": str(inverse), "weights_sha256": hashlib.sha256(b"".join(
            hashlib.sha256(p.read_bytes()).digest() for p in weights)).hexdigest(), "clips": count}
        record = real / ".labelled_by.json"
        if real.exists() and (not record.is_file() or json.loads(record.read_text()) != stamp):
            print(f"{real}: labelled by another inverse model or settings; relabelling", flush=True)
            shutil.rmtree(real)
        with tempfile.TemporaryDirectory() as tmp:
            for clip in find_clips(train)[:count]:
                (Path(tmp) / clip.name).symlink_to(clip.resolve())
            cmd = [sys.executable, "-m", "neural_render", "autolabel", tmp, "--out", str(real), "--model", str(inverse),
                   "--no-progress"]
            subprocess.run(cmd, check=True, cwd=ROOT)
        with atomic_path(record) as tmp:
            Path(tmp).write_text(json.dumps(stamp))
        return f"relabelled by {inverse} (weights sha256 {stamp['weights_sha256'][:12]})"
    make_degraded_real_clips(train, real, max_clips=count, seed=0)
    return "degraded exact G-buffers (no inverse model shipped)"


class Budget:
    """Lightning callback: print the mean loss every ``every`` steps; stop when this process has used ``cpu_minutes``
    of CPU time (all threads; the machine is shared, so wall-clock time says little about the work done)."""

    def __new__(cls, cpu_minutes: float, every: int = 50):
        import lightning.pytorch as pl

        class _Budget(pl.Callback):
            def __init__(self):
                self.losses, self.start, self.cpu0 = [], time.time(), time.process_time()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.losses.append(float(loss))
                cpu = time.process_time() - self.cpu0
                if trainer.global_step % every == 0:
                    mean = sum(self.losses) / len(self.losses)
                    print(f"step {trainer.global_step:6d}  loss {mean:.5f}  wall {time.time() - self.start:6.0f} s  "
                          f"cpu {cpu:6.0f} s", flush=True)
                    self.losses = []
                if cpu > cpu_minutes * 60:
                    trainer.should_stop = True

        return _Budget()


def fit(configs: list[str], overrides: list[str], minutes: float, max_steps: int, log_dir: Path, export: Path,
        wall_minutes: float = 240.0) -> dict:
    from neural_render.tasks.fit_cli import build_cli

    hms = time.strftime("%H:%M:%S", time.gmtime(int(wall_minutes * 60)))
    argv = [a for c in configs for a in ("--config", str(ROOT / c))] + [
        "--trainer.max_steps", str(max_steps), "--trainer.max_time", f"00:{hms}",
        "--trainer.default_root_dir", str(log_dir), "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "50", *overrides]
    cli = build_cli(argv)
    cli.trainer.callbacks.append(Budget(minutes))
    start, cpu = time.time(), time.process_time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds, cpu = time.time() - start, time.process_time() - cpu
    cli.model.export(export)
    return {"steps": int(cli.model.global_step), "wall_seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "configs": configs, "overrides": overrides}


def training_record(model: Path) -> dict | None:
    """The training.json of an exported model folder (how it was made), None when it has none."""
    record = model / "training.json"
    return json.loads(record.read_text()) if record.is_file() else None


def pretrained_backbone(model: Path) -> list[str]:
    """fit overrides that load the backbone of the exported forward model folder ``model`` (instead of a tiny init)."""
    return ["--backbone.init_args.tiny", "false", "--backbone.init_args.config", "null", "--backbone.init_args.seed",
            "null", "--backbone.init_args.pretrained_dir", str(model / "backbone")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--minutes", type=float, default=50.0, help="CPU-time training budget in minutes (default 50)")
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--data", default=str(ROOT / "data_cache"))
    parser.add_argument("--out", default=str(ROOT / "data" / "models" / "forward_tiny"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-dir", default=str(ROOT / "out" / "forward_tiny"),
                        help="Lightning logs, report.json and the stage-1 export of a 2-stage run")
    parser.add_argument("--realiz3d-minutes", type=float, default=0.0, help="stage 1 + stage 2 budget (default 0)")
    parser.add_argument("--real-clips", type=int, default=64)
    parser.add_argument("--realiz3d-stages", type=int, choices=(1, 2), default=2,
                        help="export after Realiz3D stage 1 or stage 2 (default 2)")
    parser.add_argument("--skip-eval", action="store_true", help="do not run the held-out evaluation")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of the plain stage (default: config's)")
    parser.add_argument("--init-from", default=None,
                        help="exported forward model whose backbone the plain stage fine-tunes (default: random init)")
    parser.add_argument("--realiz3d-from", default=None,
                        help="exported plain forward model to start the Realiz3D stages from (skips plain training)")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    train = ensure_train_data(data)
    out = Path(args.out)
    logs = Path(args.log_dir)
    data_override = ["--data.init_args.train_roots", str(train)]
    report = {"train_data": str(train)}
    base_model = out
    if args.realiz3d_from:
        base_model = Path(args.realiz3d_from)
        if args.realiz3d_minutes <= 0 or not (base_model / "backbone").is_dir():
            parser.error("--realiz3d-from needs --realiz3d-minutes > 0 and an exported forward model folder")
        report["plain"] = {"from": str(base_model)}
        if (previous := training_record(base_model)) is not None:  # the chain of runs stays on record
            report["plain_training"] = previous
    else:
        init = [] if args.lr is None else ["--model.init_args.lr", str(args.lr)]
        # read before the fit: --out may be the --init-from folder, which the export replaces
        previous = training_record(Path(args.init_from)) if args.init_from else None
        if args.init_from:
            init += pretrained_backbone(Path(args.init_from)) + ["--model.init_args.zero_init_output", "false"]
        report["plain"] = fit(["configs/trainer/cpu_smoke.yaml", "configs/data/synth_forward.yaml",
                               "configs/task/forward.yaml"], data_override + init, args.minutes, args.max_steps,
                              logs / "plain", out)
        if args.init_from:
            report["plain"]["init_from"] = args.init_from
            if previous is not None:
                report["init_from_training"] = previous
    if args.realiz3d_minutes > 0:
        real = data / "forward_real_64"
        report["real_data"] = {"folder": str(real), "source": make_real_clips(train, real, args.real_clips)}
        stage1 = out if args.realiz3d_stages == 1 else logs / "stage1_export"
        base = ["configs/trainer/cpu_smoke.yaml", "configs/data/synth_forward_real.yaml", "configs/task/forward.yaml"]
        real_override = data_override + ["--data.init_args.real_roots", str(real)]
        report["stage1"] = fit(base + ["configs/task/forward_stage1.yaml"], real_override + pretrained_backbone(
            base_model), args.realiz3d_minutes / 2, args.max_steps, logs / "stage1", stage1)
        if args.realiz3d_stages == 2:
            shifters = json.dumps({"pretrained": str(stage1 / "domain_shifters")})
            report["stage2"] = fit(base + ["configs/task/forward_stage2.yaml"], real_override + pretrained_backbone(
                stage1) + ["--model.init_args.domain_shifter", shifters],
                args.realiz3d_minutes / 2, args.max_steps, logs / "stage2", out)
    print(json.dumps(report, indent=1))
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "report.json").write_text(json.dumps(report, indent=1))
    from neural_render.io.atomic import atomic_path

    with atomic_path(out / "training.json") as tmp:  # beside the exported weights: how they were made
        Path(tmp).write_text(json.dumps(dict(report, argv=sys.argv[1:]), indent=1) + "\n")
    if not args.skip_eval:
        heldout = data / "synth_test_64_spp256"
        if not (heldout / "synth.json").is_file():
            subprocess.run(["bash", str(ROOT / "scripts" / "make_synth_datasets.sh"), str(data)], check=True, cwd=ROOT)
        # a VALIDATION set (the former "test" maps; issue #22): the shipped JSONs and README tables come from
        # scripts/score_shipped_models.py, which also scores the test split once
        for kind, extra in (("forward", []), ("relight", ["--relight-data", str(data / "synth_test_64_spp256_env2")])):
            cmd = [sys.executable, "-m", "neural_render", "eval", kind, "--data", str(heldout), *extra, "--model",
                   str(out), "--overwrite", "--json", str(logs / f"eval_val_{kind}.json")]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
