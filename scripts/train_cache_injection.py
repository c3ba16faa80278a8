#!/usr/bin/env python
"""Fine-tune the shipped forward model with the 3D-cache injection: ``data/models/forward_cache_tiny`` (CPU, brief).

    python scripts/train_cache_injection.py [--base data/models/forward_tiny] [--max-steps 1467] [--minutes 40]
                                            [--data data_cache] [--out data/models/forward_cache_tiny]
                                            [--shadow mutual|occlusion|blocked_light|off] [--real-data none|auto]
                                            [--shadow-residual on|off] [--seed K]

Minimally invasive (Real2SAM2Real): the base forward model's weights stay frozen; only a zero-initialised
CacheInjection projection and a rank-8 LoRA train (configs/task/forward_cache.yaml through ``neural-render fit``'s
LightningCLI). The cache render of a sample is the exact normal map of one object of the synthetic clip, perturbed
(dilation, shift, noise) in training, and (``--shadow mutual``, default) the shadow map of the object and its scene
on each other: on the scene's pixels the share of the env's light the object's mesh blocks, on the object's own
pixels the share the rest of the scene (rasterized without the object and lifted frame by frame, as the insert
pipeline lifts its scene G-buffer) and the object block (raster/shadow.py mutual_occlusion; the scene is redrawn
from synth.json, so no 3D ground truth beyond the data engine's own is needed). ``--shadow occlusion`` feeds the
object's cast shadow alone (what shipped before: the object's own pixels then tied with no injection).
``--shadow-residual on`` (default) also trains the injection's shadow residual: the light that shadow map blocks
from the split-sum prior, times a learned per-channel gain that starts at zero, is subtracted from the predicted x0
(models/cache_injection.py ``CacheInjection.x0_add``): the darkening a shadow causes is multiplicative, which the
token path alone learned poorly on the object's own pixels.

Data: ``--clips`` scenes the BASE model never saw, ``<data>/synth_train_64_unseen``: clips 512.. of the dataset of
``<data>/synth_train_64`` (same seed and settings; ``neural-render synth --first-clip 512``, made here when
missing). Fine-tuning on the base model's own training scenes taught the injection nothing: the base model has
fitted those scenes' shadows already, so the cache brought no new signal there (measured: injection 0.18 dB worse
than none in the shadow region). ``--real-data auto`` adds "real" stand-ins (``<data>/forward_real_64``, relabelled
by the inverse model, else degraded exact G-buffers in ``<data>/cache_real_64``), default none.
The base model's forward_config (prior, its pixel filter, residual, window) and Realiz3D shifters (frozen) are carried
over.

Output: a CacheForwardPipeline folder (EMA weights) + ``cache_training.json`` (base model, data, steps, time, loss).
The held-out evaluation is ``neural-render eval insert`` (test env maps; never read here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unseen_train_data(data: Path, clips: int) -> Path:
    """``<data>/synth_train_64_unseen``: clips 512..512+clips-1 of synth_train_64's dataset (rendered when missing)."""
    import subprocess

    out = data / "synth_train_64_unseen"
    cmd = [sys.executable, "-m", "neural_render", "synth", "--out", str(out), "--envmaps", "train", "--seed", "1000",
           "--first-clip", "512", "--clips", str(clips), "--frames", "8", "--size", "64x64", "--spp", "16",
           "--workers", "2", "--no-progress"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def real_data(data: Path, train: Path, count: int) -> tuple[Path, str]:
    relabelled = data / "forward_real_64"
    if any(relabelled.glob("*/meta.json")):
        return relabelled, "relabelled by the inverse model (scripts/train_forward_tiny.py)"
    from neural_render.data.degraded_real import make_degraded_real_clips

    degraded = data / "cache_real_64"
    make_degraded_real_clips(train, degraded, max_clips=count, seed=0)
    return degraded, "degraded exact G-buffers (data.degraded_real.degrade_gbuffer)"


class LossLog:
    """Lightning callback: mean training loss every ``every`` steps (printed and kept)."""

    def __new__(cls, every: int = 25):
        import lightning.pytorch as pl

        class _Log(pl.Callback):
            def __init__(self):
                self.window, self.history, self.start = [], [], time.time()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.window.append(float(loss))
                if trainer.global_step % every == 0:
                    mean = sum(self.window) / len(self.window)
                    self.history.append((trainer.global_step, mean))
                    print(f"step {trainer.global_step:6d}  loss {mean:.5f}  {time.time() - self.start:7.0f} s",
                          flush=True)
                    self.window = []

        return _Log()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--base", default=str(ROOT / "data" / "models" / "forward_tiny"))
    parser.add_argument("--minutes", type=float, default=40.0,
                        help="wall-clock cap (default 40; the default run stops at --max-steps first, ~31 min)")
    parser.add_argument("--max-steps", type=int, default=1467,
                        help="optimizer steps (default 1467: the shipped model's run)")
    parser.add_argument("--data", default=str(ROOT / "data_cache"))
    parser.add_argument("--out", default=str(ROOT / "data" / "models" / "forward_cache_tiny"))
    parser.add_argument("--clips", type=int, default=128, help="synthetic (and real stand-in) clips used")
    parser.add_argument("--train-data", default=None,
                        help="synthetic train folder (default <data>/synth_train_64_unseen, see above)")
    parser.add_argument("--real-data", choices=("none", "auto"), default="none",
                        help="'none' (default) or 'auto' (relabelled or degraded stand-ins of the train clips)")
    parser.add_argument("--shadow", choices=("mutual", "occlusion", "blocked_light", "off"), default="mutual",
                        help="what the cache render carries besides the object's normals: its shadow map with the "
                             "scene's shadow ON the object on the object's pixels (mutual, the config's default), "
                             "its shadow map alone (occlusion), the light its shadow blocks from the split-sum "
                             "prior (blocked_light), or nothing (off)")
    parser.add_argument("--shadow-residual", choices=("on", "off"), default="on",
                        help="also subtract the light the cache's shadow blocks from the predicted x0 with a learned, "
                             "zero-initialised gain (on, the config's default; needs a shadow)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the LoRA init, the data order / object picks and the training noise (default 0)")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_path
    from neural_render.tasks.fit_cli import build_cli

    torch.set_num_threads(args.threads)
    base, data, out = Path(args.base), Path(args.data), Path(args.out)
    train = Path(args.train_data) if args.train_data else unseen_train_data(data, args.clips)
    if not (base / "forward_config.json").is_file():
        raise NeuralRenderError("no trained forward model (run scripts/train_forward_tiny.py first)", base)
    if not (train / "synth.json").is_file():
        raise NeuralRenderError("no synthetic train dataset (synth.json) there", train)
    forward_config = json.loads((base / "forward_config.json").read_text())
    real, real_source = real_data(data, train, args.clips) if args.real_data == "auto" else (None, "none")
    hms = time.strftime("%H:%M:%S", time.gmtime(int(args.minutes * 60)))
    overrides = [f"--{part}.init_args.model_dir={base}" for part in ("backbone", "codec", "denoiser")] + [
        "--backbone.init_args.lora_rank", str(args.lora_rank),
        "--model.init_args.with_prior", str(bool(forward_config.get("with_prior"))).lower(),
        "--model.init_args.residual", str(bool(forward_config.get("residual"))).lower(),
        "--model.init_args.prior_filter_sigma", str(float(forward_config.get("prior_filter_sigma", 0.0))),
        "--model.init_args.window", str(int(forward_config.get("window", 4))),
        "--model.init_args.overlap", str(int(forward_config.get("overlap", 2))),
        "--data.init_args.train_roots", str(train), "--data.init_args.real_roots", str(real) if real else "null",
        "--data.init_args.source_roots", json.dumps([str(train)]),
        "--data.init_args.max_train_clips", str(args.clips),
        "--trainer.max_steps", str(args.max_steps), "--trainer.max_time", f"00:{hms}",
        "--trainer.default_root_dir", str(ROOT / "out" / "forward_cache"), "--trainer.limit_val_batches", "0",
        "--trainer.log_every_n_steps", "25"]
    import yaml

    # a nested dict given on the command line REPLACES the config's: start from the config's own settings
    task_config = yaml.safe_load((ROOT / "configs/task/forward_cache.yaml").read_text())
    injection = {**task_config["model"]["init_args"]["injection"], "shadow": args.shadow != "off",
                 "shadow_light": args.shadow == "blocked_light", "received_shadow": args.shadow == "mutual",
                 "shadow_residual": args.shadow != "off" and args.shadow_residual == "on"}
    overrides += ["--model.init_args.injection", json.dumps(injection),
                  "--data.init_args.shadow", str(args.shadow != "off").lower(),
                  "--data.init_args.received_shadow", str(args.shadow == "mutual").lower()]
    if args.lr is not None:
        overrides += ["--model.init_args.lr", str(args.lr)]
    if args.seed:  # seed 0 = the configs' own seeds (the shipped run's command line)
        overrides += ["--seed_everything", str(args.seed), "--data.init_args.seed", str(args.seed),
                      "--model.init_args.noise_seed", str(args.seed)]
    if (base / "domain_shifters").is_dir():
        overrides += ["--model.init_args.domain_shifter", json.dumps({"pretrained": str(base / "domain_shifters")})]
    configs = ["configs/trainer/cpu_smoke.yaml", "configs/task/forward_cache.yaml"]
    cli = build_cli([a for c in configs for a in ("--config", str(ROOT / c))] + overrides)
    log = LossLog(25)
    cli.trainer.callbacks.append(log)
    trainable = sum(p.numel() for _, p in cli.model.trainable_named_parameters())
    frozen = sum(p.numel() for p in cli.model.parameters()) - trainable
    print(f"trainable {trainable} parameters ({', '.join(sorted({n.split('.')[0] for n in cli.model.trainable_names}))}"
          f"), frozen {frozen}", flush=True)
    start = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.time() - start
    cli.model.export(out)
    record = {"command": "python scripts/train_cache_injection.py " + " ".join(sys.argv[1:]),
              "base_model": str(base), "forward_config": forward_config, "synthetic_data": str(train),
              "real_data": str(real) if real else None, "real_data_source": real_source, "clips": args.clips,
              "steps": int(cli.model.global_step), "seconds": round(seconds, 1), "lora_rank": args.lora_rank,
              "trainable_parameters": trainable, "frozen_parameters": frozen, "loss_history": log.history,
              "configs": configs, "overrides": overrides, "weights": "EMA"}
    with atomic_path(out / "cache_training.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "loss_history"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
