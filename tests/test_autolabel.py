"""`neural-render autolabel`: folder of videos -> one clip folder each + manifest; failures recorded, resumable,
sharded by RANK/WORLD_SIZE, and a run killed with SIGKILL resumes to outputs identical to an uninterrupted run.
The model is a tiny UNTRAINED pipeline (mechanics only)."""

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neural_render.autolabel.inputs import find_inputs, shard
from neural_render.bench.inverse import build_tiny_pipeline
from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.io import read_clip, write_image, write_video

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("autolabel")
    build_tiny_pipeline("per_pass", kind="flow").save_pretrained(root / "model")
    inputs = root / "in"
    g = np.random.default_rng(0)
    for i in range(5):
        write_video(inputs / f"v{i}.mp4", g.integers(0, 256, (3, 10, 12, 3)).astype(np.uint8), lossless=True)
    for i in range(2):
        write_image(inputs / "frames" / f"{i:02d}.png", g.integers(0, 256, (10, 12, 3)).astype(np.uint8))
    (inputs / "bad.mp4").write_bytes(b"this is not a video" * 40)
    (inputs / "notes.txt").write_text("ignored")
    return root


def args(setup, out, *extra):
    return ["autolabel", str(setup / "in"), "--out", str(out), "--model", str(setup / "model"), "--steps", "2",
            "--accelerator", "cpu", *extra]


def same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths whose presence or bytes differ between two folders (recursive)."""
    diff = []

    def walk(cmp: filecmp.dircmp, prefix: str):
        diff.extend(prefix + n for n in cmp.left_only + cmp.right_only + cmp.funny_files)
        diff.extend(prefix + n for n in cmp.common_files if not filecmp.cmp(Path(cmp.left) / n, Path(cmp.right) / n,
                                                                            shallow=False))
        for name, sub in cmp.subdirs.items():
            walk(sub, prefix + name + "/")

    walk(filecmp.dircmp(a, b), "")
    return diff


@pytest.fixture(scope="module")
def full_run(setup):
    out = setup / "full"
    assert main(args(setup, out)) == 1  # one clip fails -> exit 1, the others are done
    return out


def test_inputs_are_found_sorted_and_sharded(setup):
    items = find_inputs(setup / "in")
    assert [cid for cid, _ in items] == ["bad", "frames", "v0", "v1", "v2", "v3", "v4"]
    assert [cid for cid, _ in shard(items, 1, 3)] == ["frames", "v2"]


def test_manifest_records_done_and_failed_and_outputs_are_clips(setup, full_run):
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert manifest["counts"] == {"done": 6, "failed": 1, "pending": 0}
    bad = manifest["clips"]["bad"]
    assert bad["status"] == "failed" and "not a readable video" in bad["reason"]
    clip = read_clip(full_run / "v3")
    assert clip.gbuffer.normal.shape == (1, 3, 3, 10, 12) and clip.gbuffer.mask is not None
    assert (full_run / "frames" / "previews" / "depth.mp4").is_file() and not (full_run / "bad").exists()


def test_rerun_skips_finished_clips_and_refuses_other_settings(setup, full_run, capsys):
    stamp = (full_run / "v0" / "meta.json").stat().st_mtime_ns
    assert main(args(setup, full_run)) == 1  # the bad clip is retried (and fails again)
    out = capsys.readouterr().out
    assert "v0: done" not in out and "bad: failed" in out
    assert (full_run / "v0" / "meta.json").stat().st_mtime_ns == stamp
    assert main(args(setup, full_run, "--seed", "1")) == EXIT_BAD_INPUT
    assert "other settings" in capsys.readouterr().err
    assert main(["autolabel", str(setup / "nowhere"), "--out", str(setup / "x"), "--model", str(setup / "model")]) \
        == EXIT_BAD_INPUT


def test_env_shards_together_equal_a_full_run(setup, full_run, monkeypatch):
    out = setup / "sharded"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        main(args(setup, out))
        labelled = {p.name for p in out.iterdir() if (p / "meta.json").is_file()}
        if rank == "1":  # rank 1 of 2: items 1, 3, 5 of [bad, frames, v0, v1, v2, v3, v4]
            assert labelled == {"frames", "v1", "v3"}
    assert same_tree(full_run, out) == []


def test_killed_run_resumes_to_identical_outputs(setup, full_run):
    out = setup / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen([sys.executable, "-m", "neural_render", *args(setup, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    status_dir = out / ".autolabel" / "status"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if status_dir.is_dir() and len(list(status_dir.glob("*.json"))) >= 2:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = len(list(status_dir.glob("*.json")))
    assert 2 <= finished < 7, "the run was not interrupted mid-way"
    assert not (out / "manifest.json").exists()
    assert main(args(setup, out)) == 1
    kept = (".autolabel", ".neural-render-output.json")
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name not in kept]  # no temporaries
    assert same_tree(full_run, out) == []
