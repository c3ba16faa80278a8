"""`neural-render autolabel --devices 2 --accelerator cpu`: Lightning DDP predict with 2 CPU processes (gloo) splits
the clips between the ranks and writes exactly what a single process writes. Tiny UNTRAINED model (mechanics only)."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from neural_render.bench.inverse import build_tiny_pipeline
from neural_render.cli import main
from neural_render.io import write_video


def test_two_process_ddp_predict_matches_one_process(tmp_path):
    torch.set_num_threads(1)
    build_tiny_pipeline("joint", kind="x0").save_pretrained(tmp_path / "model")
    g = np.random.default_rng(1)
    for i in range(3):
        write_video(tmp_path / "in" / f"c{i}.mp4", g.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8), lossless=True)
    common = ["--model", str(tmp_path / "model"), "--accelerator", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "neural_render", "autolabel", str(tmp_path / "in"), "--out",
                           str(tmp_path / "ddp"), "--devices", "2", *common], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2, 2 clips" in done.stdout and "3 done, 0 failed, 0 pending" in done.stdout
    assert main(["autolabel", str(tmp_path / "in"), "--out", str(tmp_path / "single"), *common]) == 0
    for path in sorted((tmp_path / "single").rglob("*")):
        if path.is_file():
            twin = tmp_path / "ddp" / path.relative_to(tmp_path / "single")
            assert twin.is_file() and filecmp.cmp(path, twin, shallow=False), path
    assert {p.name for p in Path(tmp_path / "ddp").iterdir()} == {p.name for p in (tmp_path / "single").iterdir()}
