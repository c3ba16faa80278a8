"""scripts/train_chain.py + neural_render/training_chain.py: training resumable across sessions (issue #23).

Tiny sizes: segments end by a hidden ``--segment-steps`` (deterministic) except in the max_time test. Every call
starts real ``neural-render fit`` workers in subprocesses (a few seconds each on one thread).
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_chain.py"
TOY = ["trainer/cpu_smoke.yaml", "data/toy.yaml", "backbone/tiny_wan.yaml", "task/toy.yaml"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def chain(run, configs, *extra, total=6, minutes=10, check=None):
    """Run scripts/train_chain.py; returns the CompletedProcess (check: expected exit code)."""
    args = [sys.executable, str(SCRIPT), "--run", str(run), *(a for c in configs for a in ("--config", str(c))),
            "--total-steps", str(total), "--minutes", str(minutes), *map(str, extra)]
    proc = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    if check is not None:
        assert proc.returncode == check, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def record(run) -> dict:
    return json.loads((Path(run) / "training.json").read_text())


def ckpt(run) -> dict:
    return torch.load(Path(run) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def max_diff(a: dict, b: dict) -> tuple[float, float]:
    """Max abs difference of (weights, EMA shadows) between two checkpoints."""
    weights = max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"])
    ema = max((a["ema"]["shadow"][k].float() - b["ema"]["shadow"][k].float()).abs().max().item()
              for k in a["ema"]["shadow"])
    return weights, ema


def assert_continuous(segments, total):
    assert segments[0]["start_step"] == 0 and segments[-1]["end_step"] == total
    for before, after in itertools.pairwise(segments):
        assert after["start_step"] == before["end_step"]


@pytest.fixture(scope="module")
def toy_configs(tmp_path_factory):
    """Copies of the toy configs (the refusal test edits one)."""
    folder = tmp_path_factory.mktemp("configs")
    out = []
    for rel in TOY:
        target = folder / rel.replace("/", "_")
        shutil.copy(ROOT / "configs" / rel, target)
        out.append(target)
    return out


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory, toy_configs):
    """The toy task trained 6 steps as two 3-step segments (two calls) and as one segment."""
    base = tmp_path_factory.mktemp("chains")
    two, one = base / "two", base / "one"
    first = chain(two, toy_configs, "--segment-steps", 3, check=0)
    after_first = record(two)
    chain(two, toy_configs, "--segment-steps", 3, check=0)
    chain(one, toy_configs, check=0)
    return two, one, after_first, first


def test_two_segments_reach_the_total_and_record_a_continuous_chain(two_and_one, toy_configs):
    two, one, after_first, first = two_and_one
    assert "segment 0: max_steps at step 3" in first.stdout
    assert [s["end_step"] for s in after_first["segments"]] == [3] and not after_first["done"]
    rec = record(two)
    assert rec["done"] and rec["global_step"] == 6 and ckpt(two)["global_step"] == ckpt(one)["global_step"] == 6
    segments = rec["segments"]
    assert len(segments) == 2 and [s["stopped_by"] for s in segments] == ["max_steps", "max_steps"]
    assert_continuous(segments, 6)
    for seg in segments:
        assert seg["wall_seconds"] > 0 and seg["cpu_seconds"] > 0 and seg["host"] and seg["started"] and seg["ended"]
        assert seg["git_commit"] and len(seg["git_commit"]) == 40 and "--seed_everything" in seg["argv"]
    assert "--ckpt_path" not in segments[0]["argv"] and "--ckpt_path" in segments[1]["argv"]
    recipe = rec["recipe"]
    assert recipe["total_steps"] == 6 and recipe["threads"] == 1 and recipe["seed"] == 0
    assert all(len(c["sha256"]) == 64 for c in recipe["configs"]) and len(recipe["configs"]) == 4
    assert recipe["seeds"]["seed_everything"] == 0 and "model.init_args.noise_seed" in recipe["seeds"]
    # one Lightning log folder per segment, in the run folder
    assert len(list((two / "lightning_logs").iterdir())) == 2
    # a finished chain trains no further
    again = chain(two, toy_configs, "--segment-steps", 3, check=0)
    assert "chain done: 6 of 6" in again.stdout and len(record(two)["segments"]) == 2


def test_toy_two_segments_equal_one_run_exactly(two_and_one):
    """MEASURED: with an unshuffled batch order (toy data) resuming is exact: weights, EMA, optimizer moments."""
    two, one, _, _ = two_and_one
    a, b = ckpt(two), ckpt(one)
    assert max_diff(a, b) == (0.0, 0.0)
    moments = [(x["exp_avg"] - y["exp_avg"]).abs().max().item() for x, y in
               zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values())]
    assert max(moments) == 0.0
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"] == 6
    assert torch.equal(a["noise_generator_states"], b["noise_generator_states"])


def test_changed_recipe_is_refused_with_exit_2(two_and_one, toy_configs):
    two, *_ = two_and_one
    before = (two / "training.json").read_text()
    proc = chain(two, toy_configs, "--segment-steps", 3, "--model.init_args.lr", "1e-3", check=2)
    assert "overrides" in proc.stderr and "1e-3" in proc.stderr
    proc = chain(two, toy_configs, total=8, check=2)
    assert "total_steps: recorded 6, now 8" in proc.stderr
    proc = chain(two, toy_configs[:3], check=2)
    assert "configs: recorded" in proc.stderr
    edited = toy_configs[-1]
    text = edited.read_text()
    try:
        edited.write_text(text.replace("lr: 2.0e-3", "lr: 3.0e-3"))
        proc = chain(two, toy_configs, check=2)
        assert f"{edited.name}" in proc.stderr and "changed since the chain started" in proc.stderr
    finally:
        edited.write_text(text)
    assert (two / "training.json").read_text() == before  # nothing recorded for refused calls
    # managed arguments are not passed through
    proc = chain(two, toy_configs, "--trainer.max_steps", 9, check=2)
    assert "--trainer.max_steps" in proc.stderr


def test_export_writes_a_loadable_pipeline_with_the_chain(two_and_one, toy_configs, tmp_path):
    two, *_ = two_and_one
    out = tmp_path / "model"
    chain(two, toy_configs, "--export", out, check=0)
    from neural_render.pipelines.base import load_pipeline

    pipe = load_pipeline(out)
    frames = pipe(torch.zeros(1, 4, 3, 16, 16), num_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 4, 3, 16, 16) and torch.isfinite(frames).all()
    exported = json.loads((out / "training.json").read_text())
    assert len(exported["segments"]) == 2 and exported["exported"]["global_step"] == 6
    assert exported["exported"]["weights"] == "ema"
    # the exported weights are the checkpoint's EMA weights
    shadow = ckpt(two)["ema"]["shadow"]
    loaded = dict(pipe.backbone.named_parameters())
    names = [n for n in shadow if n.startswith("backbone.")]
    assert names and all(torch.equal(loaded[n[len("backbone."):]].float(), shadow[n].float()) for n in names)
    # exporting again replaces the earlier export (a pipeline folder)
    chain(two, toy_configs, "--export", out, check=0)
    assert (out / "model_index.json").is_file()


def test_killed_runner_is_recorded_and_resumed_from_the_last_checkpoint(toy_configs, tmp_path):
    """SIGKILL of the whole session (runner + worker) mid-segment; the next call closes the segment as killed at the
    newest checkpoint's step and continues from it."""
    run = tmp_path / "run"
    args = [sys.executable, str(SCRIPT), "--run", str(run), *(a for c in toy_configs for a in ("--config", str(c))),
            "--total-steps", "400", "--minutes", "10", "--checkpoint-every-steps", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = ckpt(run)["global_step"]
    assert 2 <= killed_at < 400 and record(run)["segments"][-1]["stopped_by"] == "running"
    # SIGTERM (a polite session end): the runner forwards it, the worker saves at the end of its step
    proc = subprocess.Popen(args + ["--segment-steps", "1000"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while time.time() < deadline and (proc.poll() is None) and ckpt(run)["global_step"] < killed_at + 4:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    rec = record(run)
    first, second = rec["segments"]
    assert first["stopped_by"] == "killed" and first["end_step"] == killed_at and first["cpu_seconds"] is None
    assert second["stopped_by"] == "killed" and second["start_step"] == killed_at
    assert second["end_step"] == ckpt(run)["global_step"] == rec["global_step"] > killed_at + 3
    assert second["cpu_seconds"] > 0
    # the next call resumes from that checkpoint (here to the end, in 1-segment steps of 200)
    chain(run, toy_configs, "--checkpoint-every-steps", 2, "--segment-steps", 1000, total=400, check=0)
    rec = record(run)
    assert len(rec["segments"]) == 3 and rec["done"] and rec["segments"][2]["stopped_by"] == "max_steps"
    assert_continuous(rec["segments"], 400)


def test_segments_end_by_wall_clock_and_the_next_one_gets_its_own_minutes(toy_configs, tmp_path):
    """--minutes is per segment: Lightning restores the Timer's elapsed time from the checkpoint, which would stop a
    resumed segment at once; the runner gives every segment its own budget."""
    run = tmp_path / "run"
    for _ in range(2):
        chain(run, toy_configs, total=100000, minutes=0.1, check=0)
    first, second = record(run)["segments"]
    assert first["stopped_by"] == second["stopped_by"] == "max_time"
    assert 0 < first["end_step"] == second["start_step"] < second["end_step"] - 3
    # --from-scratch needs a new folder
    assert "--from-scratch needs a new run folder" in chain(run, toy_configs, "--from-scratch", total=100000,
                                                            minutes=0.1, check=2).stderr


def test_from_scratch_runs_segments_back_to_back(toy_configs, tmp_path):
    run = tmp_path / "run"
    chain(run, toy_configs, "--from-scratch", "--segment-steps", 2, total=5, check=0)
    rec = record(run)
    assert [(s["start_step"], s["end_step"]) for s in rec["segments"]] == [(0, 2), (2, 4), (4, 5)] and rec["done"]
    # replaying those boundaries in a new folder repeats them
    replay = tmp_path / "replay"
    chain(replay, toy_configs, "--from-scratch", "--replay", run / "training.json", total=5, check=0)
    assert [(s["start_step"], s["end_step"]) for s in record(replay)["segments"]] == [(0, 2), (2, 4), (4, 5)]
    assert max_diff(ckpt(run), ckpt(replay)) == (0.0, 0.0)


@pytest.mark.slow
def test_shuffled_data_resume_is_close_but_not_exact(tiny_synth, tmp_path):
    """MEASURED on the shipped inverse recipe (2 clips, batch 1: 2 shuffled batches per epoch): a 1-segment run is
    bit-reproducible, a 3+1-step chain (resumed mid-epoch) is NOT equal to it: Lightning re-seeds the global RNG at
    each segment and restarts a mid-epoch loader with a new permutation (module doc of neural_render.training_chain).
    Measured here: max abs weight difference ~6e-5, EMA ~4e-5 (a 2+2 chain, resumed at an epoch boundary, also
    differs: ~1e-4), against per-step updates of the same order (lr 1e-3 in warmup)."""
    configs = [ROOT / "configs" / "trainer" / "cpu_smoke.yaml", ROOT / "configs" / "experiment" / "inverse_tiny.yaml"]
    data = ["--data.init_args.train_dir", tiny_synth, "--data.init_args.batch_size", 1]
    runs = {}
    for name, extra in (("one", []), ("repeat", []), ("mid_epoch", ["--until-done", "--segment-steps", 3])):
        chain(tmp_path / name, configs, *data, *extra, total=4, check=0)
        runs[name] = ckpt(tmp_path / name)
    assert max_diff(runs["one"], runs["repeat"]) == (0.0, 0.0)
    weights, ema = max_diff(runs["one"], runs["mid_epoch"])
    print(f"2-segment vs 1-segment, shuffled inverse data: max abs weight diff {weights:.3g}, EMA {ema:.3g}")
    assert runs["mid_epoch"]["global_step"] == 4 and len(record(tmp_path / "mid_epoch")["segments"]) == 2
    assert 0.0 < weights < 1e-2 and 0.0 < ema < 1e-2
