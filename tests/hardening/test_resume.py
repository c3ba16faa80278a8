"""A training run killed mid-way and resumed from its checkpoint continues the same loss curve.

The uninterrupted run and the killed-then-resumed run must log identical per-step losses after the resume
point: weights, optimizer, LR schedule, EMA and the training-noise generator all come back from the checkpoint.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS = 40  # long enough that the killed run (stopped once a checkpoint of step >= 6 shows up) is still short of it


def _fit_args(root: Path, max_steps: int) -> list[str]:
    return [sys.executable, "-m", "neural_render", "fit",
            "--config", str(CONFIGS / "trainer" / "cpu_smoke.yaml"), "--config", str(CONFIGS / "data" / "toy.yaml"),
            "--config", str(CONFIGS / "backbone" / "tiny_wan.yaml"), "--config", str(CONFIGS / "task" / "toy.yaml"),
            "--trainer.max_steps", str(max_steps), "--trainer.default_root_dir", str(root),
            "--trainer.limit_val_batches", "0"]


def _losses(root: Path) -> dict[int, float]:
    out = {}
    for metrics in root.glob("lightning_logs/version_*/metrics.csv"):
        with open(metrics) as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    out[int(row["step"])] = float(row["train/loss"])
    return out


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_killed_run_resumes_to_the_same_loss_curve(tmp_path):
    full = tmp_path / "full"
    subprocess.run(_fit_args(full, STEPS), check=True, env=_env(), capture_output=True)
    reference = _losses(full)
    assert len(reference) >= STEPS - 1

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_fit_args(killed, 10_000), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    ckpts: list[Path] = []
    while time.time() < deadline:
        ckpts = [p for p in killed.glob("lightning_logs/version_0/checkpoints/*.ckpt") if "step=" in p.name]
        if any(int(p.stem.split("step=")[1]) >= 6 for p in ckpts):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # a checkpoint being written at kill time is not a complete .ckpt (Lightning writes atomically)
    ckpts = sorted((p for p in killed.glob("lightning_logs/version_0/checkpoints/*.ckpt") if "step=" in p.name),
                   key=lambda p: int(p.stem.split("step=")[1]))
    assert ckpts, "the killed run wrote no checkpoint"
    resume_step = int(ckpts[-1].stem.split("step=")[1])
    assert resume_step < STEPS

    resumed = tmp_path / "resumed"
    subprocess.run(_fit_args(resumed, STEPS) + ["--ckpt_path", str(ckpts[-1])], check=True, env=_env(),
                   capture_output=True)
    after = _losses(resumed)
    compared = [s for s in sorted(reference) if s >= resume_step and s in after]
    assert len(compared) >= STEPS - resume_step - 2
    for step in compared:
        assert after[step] == reference[step], (step, after[step], reference[step])
