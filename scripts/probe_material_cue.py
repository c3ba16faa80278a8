#!/usr/bin/env python
"""Diagnostic (issue #5): how much roughness / metallic signal do the benchmark's renders carry for a model of this
scale? No diffusion, no backbone: it answers whether the inverse model's ties with the train-mean constants are a
recipe problem or a property of the data.

    python scripts/probe_material_cue.py [--train data_cache/synth_train_64 [more dirs]] [--val ...] [--test ...]
                                         [--minutes 20] [--width 32] [--loss mse|clip_rmse] [--json OUT]

1. Decomposition (exact, no learning) on the validation and test sets, per clip as ``neural-render eval inverse``
   scores (RMSE over the ground-truth foreground, mean over clips): the train-mean constant; the constant with the
   GROUND's pixels exact (the synth ground is one dielectric material per clip, object id of the mesh of kind
   "ground"); the constant with the OBJECTS' pixels exact; and the ground's share of the scored pixels.
2. A plain CNN probe (per frame, 0.35 M parameters at width 32, a global-context branch) trained on the train
   folders' frames to regress roughness and metallic directly (the inverse training's exposure / white-balance /
   mirror augmentation, the same [0, 1]-clamped sRGB input; zero-initialised output = the constants), on 1 CPU
   thread for ``--minutes`` of training; ``--scores`` times (evenly, and before training) it is scored on
   validation and test against the train-mean constants with the paired per-clip bootstrap of ``eval inverse``.
   The row chosen by validation (lowest roughness + metallic RMSE) is reported with its test score.
   ``--loss clip_rmse`` trains on the per-frame root mean square error (the quantity the evaluation averages)
   instead of the pooled squared error.

Writes ``--json`` (atomically) with both parts. Reading object ids costs ~30 ms per frame, so only the validation
and test sets are decomposed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neural_render.data.cached_clips import pack_clips
from neural_render.data.clip_dataset import find_clips
from neural_render.errors import NeuralRenderError
from neural_render.metrics.gbuffer import masked_rmse
from neural_render.metrics.inverse import paired_comparison
from neural_render.pipelines.inverse import rgb_to_model

PASSES = ("roughness", "metallic")


def load_set(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Packed clips of a synth folder (its training cache, made when missing): rgb (N, T, 3, H, W), roughness,
    metallic, mask (N, T, 1, H, W), float32."""
    from safetensors.torch import load_file

    path = pack_clips(folder, Path(folder) / ".packed_inverse.safetensors")
    return {k: v.float() for k, v in load_file(str(path)).items() if k in ("rgb", "mask", *PASSES)}


def ground_masks(folder: str | os.PathLike) -> torch.Tensor:
    """(N, T, 1, H, W) bool: the pixels of each clip's ground mesh (all False for clips without one)."""
    from neural_render.io.clip import read_meta
    from neural_render.synth.dataset import read_object_ids

    masks = []
    for clip in find_clips(folder):
        meta = read_meta(clip)
        objects = ((meta.extra or {}).get("synth") or {}).get("objects")
        if objects is None:
            raise NeuralRenderError("meta.json has no extra.synth.objects (not a synth clip)", clip)
        ids = [o["id"] for o in objects if o.get("kind") == "ground"]
        frames = np.stack([read_object_ids(clip, t) for t in range(meta.num_frames)])
        masks.append(torch.from_numpy(np.isin(frames, ids)))
    return torch.stack(masks)


def decomposition(data: dict[str, torch.Tensor], ground: torch.Tensor, means: dict[str, float]) -> dict:
    """Per-pass mean-over-clips RMSE of: the constant, ground exact, objects exact; and the ground's pixel share."""
    valid = data["mask"] > 0.5
    share = (ground & valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
    out = {"ground_share": float(share.mean())}
    for name in PASSES:
        gt = data[name]
        const = torch.full_like(gt, means[name])
        rows = {"constant": const, "ground_exact": torch.where(ground, gt, const),
                "objects_exact": torch.where(ground, const, gt)}
        out[name] = {k: float(masked_rmse(v, gt, valid).mean()) for k, v in rows.items()}
    return out


class ProbeNet(nn.Module):
    """(B, 3, H, W) model input in [-1, 1] -> (B, 2, H, W) roughness, metallic (the train means at zero output)."""

    def __init__(self, width: int, means: dict[str, float]):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, padding=1)
        self.down = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.GELU())
        self.context = nn.Linear(4 * w, 4 * w)
        self.head = nn.Sequential(nn.Conv2d(5 * w, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, 2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # untrained: exactly the constants
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("offset", torch.tensor([means[p] for p in PASSES]).view(1, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.down(x)
        f = f + self.context(f.mean((2, 3)))[..., None, None]
        f = F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([f, F.gelu(self.stem(x))], 1)) + self.offset


def predict(net: ProbeNet, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{pass: (N, T, 1, H, W)} predictions for every frame of ``data``."""
    n, t = data["rgb"].shape[:2]
    with torch.no_grad():
        out = torch.cat([net(rgb_to_model(x)) for x in data["rgb"].flatten(0, 1).split(64)])
    out = out.unflatten(0, (n, t))
    return {p: out[:, :, i:i + 1] for i, p in enumerate(PASSES)}


def score(net: ProbeNet, data: dict[str, torch.Tensor], means: dict[str, float]) -> dict:
    """Per pass: model / constant mean RMSE and the paired per-clip comparison (eval inverse's)."""
    valid, pred, out = data["mask"] > 0.5, predict(net, data), {}
    for p in PASSES:
        model = masked_rmse(pred[p], data[p], valid).tolist()
        base = masked_rmse(torch.full_like(data[p], means[p]), data[p], valid).tolist()
        cmp = paired_comparison(model, base, higher_is_better=False)
        out[p] = {"model": sum(model) / len(model), "constant": sum(base) / len(base), "ci95": cmp["ci95"],
                  "verdict": cmp["verdict"]}
    return out


def train_batch(train: dict[str, torch.Tensor], gen: torch.Generator, size: int = 16):
    """Random frames with the inverse training's augmentation: (x (B, 3, H, W), target (B, 2, H, W), mask)."""
    n, t = train["rgb"].shape[:2]
    i, k = torch.randint(0, n, (size,), generator=gen), torch.randint(0, t, (size,), generator=gen)
    gain = torch.exp(0.3 * torch.randn(size, 1, 1, 1, generator=gen) + 0.1 * torch.randn(size, 3, 1, 1, generator=gen))
    x, m = rgb_to_model(train["rgb"][i, k] * gain), train["mask"][i, k]
    y = torch.cat([train[p][i, k] for p in PASSES], 1)
    flip = torch.rand(size, generator=gen) < 0.5
    x, y, m = (torch.where(flip.view(-1, 1, 1, 1), v.flip(-1), v) for v in (x, y, m))
    return x, y, m


def run(args) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    parts = [load_set(d) for d in args.train]
    train = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    fg = train["mask"] > 0.5
    means = {p: float(train[p][fg].double().mean()) for p in PASSES}
    sets = {"val": load_set(args.val), "test": load_set(args.test)}
    result = {"train": args.train, "train_clips": int(train["rgb"].shape[0]), "train_means": means,
              "settings": {k: getattr(args, k) for k in ("minutes", "width", "loss", "seed", "scores")},
              "decomposition": {s: decomposition(d, ground_masks(getattr(args, s)), means) for s, d in sets.items()}}
    net, gen = ProbeNet(args.width, means), torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    trained, step, rows = 0.0, 0, []
    for k in range(args.scores + 1):  # scored at 0, 1/n ... n/n of the training budget (scoring time not counted)
        while trained / 60 < args.minutes * k / args.scores:
            tick = time.time()
            x, y, m = train_batch(train, gen)
            se = (net(x) - y) ** 2 * m
            if args.loss == "clip_rmse":
                loss = (se.sum((2, 3)) / m.sum((2, 3)).clamp_min(1) + 1e-6).sqrt().mean()
            else:
                loss = se.sum() / (2 * m.sum().clamp_min(1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            trained += time.time() - tick
        net.eval()
        rows.append({"minutes": round(trained / 60, 2), "step": step,
                     **{s: score(net, d, means) for s, d in sets.items()}})
        net.train()
        print(_row_text(rows[-1]), flush=True)
    result["probe"] = rows
    result["selected_by_val"] = min(rows[1:], key=lambda r: sum(r["val"][p]["model"] for p in PASSES))
    return result


def _row_text(row: dict) -> str:
    parts = [f"{row['minutes']:5.1f} min, step {row['step']:5d}"]
    for s in ("val", "test"):
        parts += [f"{s} {p} {row[s][p]['model']:.3f} / {row[s][p]['constant']:.3f} {row[s][p]['verdict']}"
                  for p in PASSES]
    return " | ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", nargs="+", default=["data_cache/synth_train_64"])
    ap.add_argument("--val", default="data_cache/synth_val_64")
    ap.add_argument("--test", default="data_cache/synth_test_64")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--loss", choices=("mse", "clip_rmse"), default="mse")
    ap.add_argument("--scores", type=int, default=5, help="scored this many times during training (and at step 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        result = run(args)
    except NeuralRenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for s, d in result["decomposition"].items():
        print(f"{s}: ground share {d['ground_share']:.2f}; " + "; ".join(
            f"{p} RMSE constant {d[p]['constant']:.3f}, ground exact {d[p]['ground_exact']:.3f}, objects exact "
            f"{d[p]['objects_exact']:.3f}" for p in PASSES))
    print("selected by validation: " + _row_text(result["selected_by_val"]))
    if args.json:
        from neural_render.io.atomic import atomic_path

        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
