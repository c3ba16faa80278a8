#!/usr/bin/env python
"""Train the tiny sim-to-real models on the synthetic proxy benchmark (CPU) and evaluate them on held-out clips.

    python scripts/train_sim2real_tiny.py [--stages data,propagation,pairs,ic,eval] [--prop-minutes 20]
                                          [--ic-minutes 40] [--data data_cache] [--models out/sim2real_tiny/models]
                                          [--ic-config configs/task/sim2real_tiny_wan.yaml] [--log-dir DIR]

Stages (each can be run alone; later stages read what earlier ones wrote):

``data``         proxy datasets (``neural-render synth --proxy``): ``<data>/sim2real_train_64`` (TRAIN env maps, seed
                 1000: the clips of ``<data>/synth_train_64`` hard-linked when present, so no path tracing is repeated,
                 plus the split-sum ``rendered/`` side), held-out ``<data>/sim2real_test_64`` (TEST env maps, seed 2000,
                 16 spp like training) and ``<data>/sim2real_test_64_spp256`` (the same 24 scenes path-traced at 256
                 spp: the converged target; 16-spp Monte-Carlo noise alone caps PSNR near 27 dB), and the 64-frame
                 clips ``<data>/sim2real_long_64_spp256`` (seed 3000) for windowed inference.
``propagation``  PropagationTask (edge-conditioned, VACE-style anchors) on the train proxy pairs (realistic side =
                 path traced) -> ``<models>/sim2real_propagation_tiny``.
``pairs``        ``neural-render sim2real-data`` over the first ``--pair-clips`` train clips with the path-traced
                 proxy anchors -> ``<data>/sim2real_pairs_64`` (the IC-LoRA's training pairs, as in RealMaster).
``ic``           Sim2RealTask (IC-LoRA, residual target, x0) -> ``<models>/sim2real_tiny``, trained on
                 ``--ic-train proxy`` (default: the proxy pairs themselves, rendered -> path-traced, the benchmark's
                 ground truth) or ``pairs`` (the anchor-propagation pairs above, RealMaster's protocol; only as good
                 as the propagation model, which is weak at this CPU budget: see the eval table).
``eval``         ``neural-render eval sim2real`` on both held-out sets (+ the long clips); JSON into
                 ``out/sim2real_tiny``.

Timing on the shared 2-core CPU: each training stops after its ``--*-minutes`` wall-clock budget (or --max-steps).
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
COMMON = ["--size", "64x64", "--no-progress", "--proxy"]


def neural_render(*args: str) -> None:
    cmd = [sys.executable, "-m", "neural_render", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def link_dataset(source: Path, target: Path) -> int:
    """Hard-link the complete clips (and synth.json, envmaps/) of ``source`` into ``target``; returns the clip count."""
    from neural_render.io.clip import is_complete_clip

    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name.startswith("clip_") and not is_complete_clip(entry):
            break  # clips are made in order; stop at the first unfinished one
        for path in [entry] if entry.is_file() else sorted(entry.rglob("*")):
            rel = path.relative_to(source)
            dest = target / rel
            if path.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            elif not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, dest)
        count += entry.name.startswith("clip_")
    return count


def stage_data(data: Path, train_clips: int) -> None:
    source = data / "synth_train_64"
    train = data / "sim2real_train_64"
    clips = train_clips
    if (source / "synth.json").is_file():
        clips = min(train_clips, link_dataset(source, train))
    neural_render("synth", "--out", str(train), "--envmaps", "train", "--seed", "1000", "--clips", str(clips),
                  "--frames", "8", "--spp", "16", *COMMON)
    test = data / "synth_test_64"
    if (test / "synth.json").is_file():
        link_dataset(test, data / "sim2real_test_64")
    neural_render("synth", "--out", str(data / "sim2real_test_64"), "--envmaps", "val", "--seed", "2000",
                  "--clips", "24", "--frames", "8", "--spp", "16", *COMMON)
    neural_render("synth", "--out", str(data / "sim2real_test_64_spp256"), "--envmaps", "val", "--seed", "2000",
                  "--clips", "24", "--frames", "8", "--spp", "256", *COMMON)
    neural_render("synth", "--out", str(data / "sim2real_long_64_spp256"), "--envmaps", "val", "--seed", "3000",
                  "--clips", "2", "--frames", "64", "--spp", "256", *COMMON)


class PrintLoss:
    """Lightning callback printing the mean training loss every ``every`` steps."""

    def __new__(cls, every: int = 50):
        import lightning.pytorch as pl

        class _Print(pl.Callback):
            def __init__(self):
                self.losses, self.start = [], time.time()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.losses.append(float(loss))
                if trainer.global_step % every == 0:
                    mean = sum(self.losses) / len(self.losses)
                    print(f"step {trainer.global_step:6d}  loss {mean:.5f}  {time.time() - self.start:7.0f} s",
                          flush=True)
                    self.losses = []

        return _Print()


def fit(configs: list[str], overrides: list[str], minutes: float, max_steps: int, log_dir: Path, export: Path) -> dict:
    from neural_render.tasks.fit_cli import build_cli

    hms = time.strftime("%H:%M:%S", time.gmtime(int(minutes * 60)))
    argv = [a for c in configs for a in ("--config", str(ROOT / c))] + [
        "--trainer.max_steps", str(max_steps), "--trainer.max_time", f"00:{hms}",
        "--trainer.default_root_dir", str(log_dir), "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "50", *overrides]
    cli = build_cli(argv)
    cli.trainer.callbacks.append(PrintLoss(50))
    start = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - start
    cli.model.export(export)
    return {"steps": int(cli.model.global_step), "seconds": round(seconds, 1), "configs": configs,
            "overrides": overrides, "export": str(export)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--stages", default="data,propagation,pairs,ic,eval")
    parser.add_argument("--prop-minutes", type=float, default=20.0)
    parser.add_argument("--ic-minutes", type=float, default=40.0)
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--train-clips", type=int, default=512)
    parser.add_argument("--pair-clips", type=int, default=200, help="train clips turned into pairs (default 200)")
    parser.add_argument("--ic-train", choices=("proxy", "pairs"), default="proxy", help="IC-LoRA training pairs")
    parser.add_argument("--data", default=str(ROOT / "data_cache"))
    parser.add_argument("--models", default=str(ROOT / "out" / "sim2real_tiny" / "models"),
                        help="where the trained pipelines go (not shipped: they do not meet the issue's goals yet)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ic-config", action="append", default=[],
                        help="extra YAML after configs/task/sim2real_tiny.yaml for the IC-LoRA (repeatable), e.g. "
                             "configs/task/sim2real_tiny_wan.yaml (the Wan-transformer experiment)")
    parser.add_argument("--log-dir", default=str(ROOT / "out" / "sim2real_tiny"),
                        help="logs, report.json and eval JSONs (default out/sim2real_tiny)")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    data, models, logs = Path(args.data), Path(args.models), Path(args.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    propagation, ic = models / "sim2real_propagation_tiny", models / "sim2real_tiny"
    pairs = data / "sim2real_pairs_64"
    report_path = logs / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if "data" in stages:
        stage_data(data, args.train_clips)
    if "propagation" in stages:
        report["propagation"] = fit(
            ["configs/trainer/cpu_smoke.yaml", "configs/task/sim2real_propagation.yaml",
             "configs/task/sim2real_propagation_tiny.yaml"],
            ["--data.init_args.train_dir", str(data / "sim2real_train_64")], args.prop_minutes, args.max_steps,
            logs / "propagation", propagation)
    if "pairs" in stages:
        start = time.time()
        neural_render("sim2real-data", str(data / "sim2real_train_64"), "--out", str(pairs), "--model",
                      str(propagation), "--enhancer", "path-traced", "--limit", str(args.pair_clips), "--no-progress")
        report["pairs"] = {"folder": str(pairs), "seconds": round(time.time() - start, 1), "enhancer": "path-traced",
                           "clips": args.pair_clips}
    if "ic" in stages:
        report["ic_lora"] = fit(
            ["configs/trainer/cpu_smoke.yaml", "configs/task/sim2real.yaml", "configs/task/sim2real_tiny.yaml",
             *args.ic_config],
            ["--data.init_args.train_dir", str(pairs if args.ic_train == "pairs" else data / "sim2real_train_64")],
            args.ic_minutes, args.max_steps, logs / "ic_lora", ic)
    if "eval" in stages:
        for name in ("sim2real_test_64_spp256", "sim2real_test_64", "sim2real_long_64_spp256"):
            neural_render("eval", "sim2real", "--data", str(data / name), "--model", str(ic), "--propagation",
                          str(propagation), "--json", str(logs / f"eval_{name}.json"))
    report_path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
