"""Training that continues across sessions: a run folder, its chain of segments and ``training.json``.

A shipped model's training takes hours of CPU while a session lasts about three, so a run is trained as a CHAIN of
segments, each one ``neural-render fit`` (its LightningCLI, :func:`neural_render.tasks.fit_cli.build_cli`) in a
SUBPROCESS (a crash or kill of the trainer cannot lose the record), resumed from the previous segment's checkpoint
with ``--ckpt_path``. ``scripts/train_chain.py`` is the command line; this module holds the record, the segment
runner (parent side); the segment worker (child side) is :mod:`neural_render.training_segment`
(``python -m neural_render.training_segment segment SPEC``).

Run folder (``RUN_DIR``)::

    training.json            the recipe and every segment (written atomically, locked while a runner is active)
    checkpoints/last.ckpt    the newest checkpoint (written atomically: a kill never leaves a broken one), saved
                             every ``checkpoint_minutes`` of wall clock, on SIGTERM and at the end of a segment
    lightning_logs/version_N one per segment: config.yaml (the full merged config), metrics.csv
    segments/NNN.json        what the worker reports at the end of segment NNN (step, stopped_by, seeds)

``training.json``::

    {"format": "neural-render training chain 1",
     "recipe": {"configs": [{"path", "sha256"}], "overrides": [...], "total_steps", "minutes", "threads", "seed",
                "checkpoint_minutes", "seeds": {every *seed* of the merged config, from the first segment}},
     "segments": [{"index", "start_step", "end_step", "stopped_by": max_steps | max_time | killed | failed,
                   "wall_seconds", "cpu_seconds" (user + system of the worker; null when the worker was killed with
                   its runner), "git_commit", "git_dirty", "host", "started", "ended", "log_dir", "argv"}],
     "global_step": the newest checkpoint's step, "done": global_step >= total_steps}

A segment still marked ``running`` when the next runner starts (its runner was killed, e.g. the session ended) is
closed by that runner as ``killed`` with ``end_step`` = the newest checkpoint's step (what the chain keeps; steps
trained after that checkpoint are lost) and ``wall_seconds`` up to that checkpoint's time.

The recipe is fixed by the first call: later calls with other configs (paths or file contents), overrides, total
steps, threads or seed are refused (exit 2) naming what differs; ``minutes`` may change between calls (it only
decides where segments end).

Determinism. Fixed by the recipe: ``seed_everything`` (``--seed``), the configs' own seeds (backbone init, data
augmentation ``(seed, epoch, index)``, ``noise_seed``: their files are hashed), thread count. Restored by a resume:
weights, optimizer (AdamW moments), LR schedule, EMA, the training-noise generator's state (DiffusionSystem saves
it), global step, epoch and batch counters. NOT restored (measured at tiny size in tests/test_training_chain.py):

* the DataLoader's shuffle order: ``shuffle=True`` draws each epoch's permutation from torch's global RNG, which
  Lightning re-seeds (``seed_everything``) at the start of every segment instead of restoring it, and a segment
  that ends mid-epoch restarts that epoch's loader from a new permutation (Lightning warns that the loader is not
  resumable): the resumed segment sees other batches than an uninterrupted run would. With a fixed batch order
  (the toy task's unshuffled in-memory clips) a 2-segment run equals a 1-segment run EXACTLY (max abs weight
  difference 0.0: weights, EMA, AdamW moments, noise-generator state); with the shipped inverse recipe's shuffled
  cached data (2 clips, batch 1, 4 steps) a 1-segment run is bit-reproducible but a 3+1 chain (resumed
  mid-epoch) differs by max abs 5.9e-5 in the weights / 4.1e-5 in the EMA, and a 2+2 chain (resumed at an epoch
  boundary: the permutation is still re-drawn from the re-seeded RNG) by 1.1e-4 / 8.6e-5, the order of one
  step's update in LR warmup. A resumed chain is therefore an equally valid but not bit-identical run;
* anything else that draws from the global RNGs during training (dropout, random augmentations that do not use
  their own generator);
* wall-clock-ended segments end at a load-dependent step, so a rerun with ``minutes`` chains different segment
  boundaries than the recorded run; the recorded ``end_step`` of each segment lets a rerun replay them exactly
  (``--replay training.json``): then a rerun repeats the same boundaries.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from neural_render.errors import NeuralRenderError

FORMAT = "neural-render training chain 1"
RECORD = "training.json"
CKPT_DIR = "checkpoints"
LAST = "last.ckpt"
ROOT = Path(__file__).resolve().parents[1]
#: fit arguments the runner sets itself (refused among the pass-through overrides)
MANAGED = ("--trainer.max_steps", "--trainer.max_time", "--trainer.default_root_dir", "--ckpt_path", "--export_dir",
           "--seed_everything", "--config", "--print_config")


class ChainMismatch(NeuralRenderError):
    """The run folder's recorded recipe differs from this call's (exit 2)."""


# ---------------------------------------------------------------------------------------------------- record
def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_state(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the checkout holding this package; (None, None) if
    none."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def make_recipe(configs: list[str], overrides: list[str], total_steps: int, threads: int, seed: int,
                minutes: float, checkpoint_minutes: float) -> dict:
    """The recipe of a chain (what must not change between its segments)."""
    bad = [a for a in overrides if a.split("=", 1)[0] in MANAGED]
    if bad:
        raise NeuralRenderError(f"these fit arguments are set by the chain runner, not passed through: {bad}")
    entries = []
    for config in configs:
        if not Path(config).is_file():
            raise NeuralRenderError("config file not found", config)
        resolved = Path(config).resolve()
        shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved  # cwd-independent
        entries.append({"path": str(shown), "sha256": sha256(resolved)})
    if total_steps < 1 or threads < 1 or minutes <= 0:
        raise NeuralRenderError(f"--total-steps and --threads must be >= 1 and --minutes > 0, got {total_steps}, "
                                f"{threads}, {minutes}")
    return {"configs": entries, "overrides": list(overrides), "total_steps": int(total_steps),
            "threads": int(threads), "seed": int(seed), "minutes": float(minutes),
            "checkpoint_minutes": float(checkpoint_minutes)}


#: recipe keys that may change between calls (they only decide where segments end / how often to checkpoint)
MUTABLE = ("minutes", "checkpoint_minutes", "seeds")


def recipe_differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between two recipes (empty: same chain)."""
    out = []
    for key in sorted(set(recorded) | set(current)):
        if key in MUTABLE:
            continue
        old, new = recorded.get(key), current.get(key)
        if key == "configs" and old != new:
            old_paths, new_paths = [c["path"] for c in old or []], [c["path"] for c in new or []]
            if old_paths != new_paths:
                out.append(f"configs: recorded {old_paths}, now {new_paths}")
            else:
                out += [f"config {o['path']} changed since the chain started (sha256 {o['sha256'][:12]} -> "
                        f"{n['sha256'][:12]})" for o, n in zip(old, new) if o["sha256"] != n["sha256"]]
        elif old != new:
            out.append(f"{key}: recorded {old!r}, now {new!r}")
    return out


def chain_progress(run_dir: Path) -> tuple[int, bool]:
    """(global step, done) of a chain folder; (0, False) when it has no readable record yet (no validation: for
    scripts that decide which stage to train next)."""
    try:
        record = json.loads((Path(run_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return 0, False
    return int(record.get("global_step", 0)), bool(record.get("done"))


def run_chain_script(run_dir: Path, configs: list[str], total_steps: int, *, minutes: float, threads: int,
                     extra: list[str] = (), until_done: bool = False, export: Path | None = None,
                     replay: dict | None = None) -> int:
    """Run ``scripts/train_chain.py`` (the command line of this module) on ``run_dir`` in a subprocess and return
    its exit code: ``configs`` + pass-through ``extra`` overrides, ``--until-done``, ``--export``, and ``replay``
    (a recorded training.json whose segment boundaries to replay, written to a temporary file). For scripts that
    chain several stages (scripts/train_inverse_v2.py, scripts/train_forward_real.py)."""
    import tempfile

    cmd = [sys.executable, str(ROOT / "scripts" / "train_chain.py"), "--run", str(run_dir),
           *[a for c in configs for a in ("--config", c)], "--total-steps", str(total_steps), "--minutes",
           str(minutes), "--threads", str(threads), *extra]
    cmd += ["--until-done"] if until_done else []
    cmd += ["--export", str(export)] if export else []
    with tempfile.TemporaryDirectory() as scratch:
        if replay:
            path = Path(scratch) / "replay.json"
            path.write_text(json.dumps(replay))
            cmd += ["--replay", str(path)]
        return subprocess.run(cmd, cwd=ROOT).returncode


def read_record(run_dir: Path) -> dict | None:
    path = run_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise NeuralRenderError(f"not a readable training record: {err}", path) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise NeuralRenderError(f"not a {FORMAT!r} record", path)
    return record


def write_record(path: Path, record: dict) -> None:
    from neural_render.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n")


def checkpoint_step(path: Path) -> int | None:
    """Global step stored in a Lightning checkpoint (memory-mapped: cheap for big files); None if missing/unreadable."""
    if not path.is_file():
        return None
    import torch

    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    except Exception:  # noqa: BLE001  a foreign or damaged file: treated as no checkpoint
        return None


def newest_checkpoint(run_dir: Path) -> tuple[Path | None, int]:
    """(path, step) of the run's newest checkpoint; (None, 0) before the first one."""
    path = run_dir / CKPT_DIR / LAST
    step = checkpoint_step(path)
    return (path, step) if step is not None else (None, 0)


def close_killed_segment(run_dir: Path, record: dict) -> None:
    """A segment left ``running`` by a killed runner: close it as ``killed`` at the newest checkpoint's step."""
    segments = record.get("segments", [])
    if not segments or segments[-1].get("stopped_by") != "running":
        return
    seg = segments[-1]
    path, step = newest_checkpoint(run_dir)
    seg["stopped_by"] = "killed"
    seg["end_step"] = max(step, seg["start_step"])
    seg["note"] = ("closed by the next call: its runner was killed; end_step is the newest checkpoint's step "
                   "(steps after it were lost), wall_seconds runs up to that checkpoint's time, cpu unknown")
    started = _dt.datetime.strptime(seg["started"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    if path is not None and step > seg["start_step"]:
        mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
        seg["wall_seconds"] = round(max(0.0, (mtime - started).total_seconds()), 1)
        seg["ended"] = mtime.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        seg["wall_seconds"], seg["ended"] = None, None
    seg["cpu_seconds"] = None


# ---------------------------------------------------------------------------------------------------- runner
def fit_argv(recipe: dict, run_dir: Path) -> list[str]:
    """The ``neural-render fit`` arguments common to every segment (configs, overrides, seed, logs in RUN_DIR)."""
    argv = [a for c in recipe["configs"] for a in ("--config", str(ROOT / c["path"]))] + list(recipe["overrides"])
    return argv + ["--seed_everything", str(recipe["seed"]), "--trainer.default_root_dir", str(run_dir)]


def _hms(minutes: float) -> str:
    seconds = max(1, round(minutes * 60))
    days, rest = divmod(seconds, 86400)
    return f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


class _Terminated(Exception):
    pass


def run_segment(run_dir: Path, record: dict, *, target_step: int | None = None, checkpoint_every_steps: int = 0,
                log=print) -> dict:
    """Run one segment (a worker subprocess) from the newest checkpoint to ``target_step`` (default: the total) or
    the recipe's minutes, whichever comes first; returns its (closed) record entry.

    The entry is written as ``running`` before the worker starts, so a runner killed mid-way leaves a trace the
    next call closes (:func:`close_killed_segment`). On SIGTERM the worker is told to stop (it saves a checkpoint
    at the end of its current step), the entry is closed as ``killed`` and SystemExit(143) is raised.
    """
    recipe, record_path = record["recipe"], run_dir / RECORD
    ckpt, start = newest_checkpoint(run_dir)
    target = recipe["total_steps"] if target_step is None else min(recipe["total_steps"], int(target_step))
    index = len(record["segments"])
    argv = fit_argv(recipe, run_dir) + ["--trainer.max_steps", str(target), "--trainer.max_time",
                                        _hms(recipe["minutes"])] + (["--ckpt_path", str(ckpt)] if ckpt else [])
    commit, dirty = git_state()
    entry = {"index": index, "start_step": start, "end_step": None, "stopped_by": "running", "target_step": target,
             "wall_seconds": None, "cpu_seconds": None, "git_commit": commit, "git_dirty": dirty,
             "host": socket.gethostname(), "started": now(), "ended": None, "argv": ["neural-render", "fit", *argv]}
    record["segments"].append(entry)
    write_record(record_path, record)
    result_path = run_dir / "segments" / f"{index:03d}.json"
    spec = {"argv": argv, "threads": recipe["threads"], "run_dir": str(run_dir), "result": str(result_path),
            "checkpoint_minutes": recipe["checkpoint_minutes"], "checkpoint_every_steps": checkpoint_every_steps}
    env = dict(os.environ, OMP_NUM_THREADS=str(recipe["threads"]), MKL_NUM_THREADS=str(recipe["threads"]))
    log(f"segment {index}: steps {start} -> {target} (max {recipe['minutes']:g} min)  neural-render fit "
        + " ".join(argv))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    child = subprocess.Popen([sys.executable, "-m", "neural_render.training_segment", "segment", json.dumps(spec)],
                             cwd=os.getcwd(), env=env)

    def on_term(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    terminated = False
    try:
        try:
            rc = child.wait()
        except (_Terminated, KeyboardInterrupt):
            terminated = True
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGTERM)
            try:
                rc = child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                rc = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    _, step = newest_checkpoint(run_dir)
    entry.update(end_step=step, wall_seconds=round(time.time() - t0, 1), ended=now(),
                 cpu_seconds=round(usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime, 1),
                 log_dir=result.get("log_dir"))
    if terminated or result.get("stopped_by") == "killed":
        entry["stopped_by"] = "killed"
    elif rc != 0 or not result:
        entry["stopped_by"], entry["exit_code"] = "failed", rc
    else:
        entry["stopped_by"] = result["stopped_by"]
        if result.get("global_step") != step:
            entry["note"] = f"worker reported step {result.get('global_step')}, checkpoint holds {step}"
    if "seeds" not in recipe and result.get("seeds") is not None:
        recipe["seeds"] = result["seeds"]
    record["global_step"], record["done"] = step, step >= recipe["total_steps"]
    write_record(record_path, record)
    log(f"segment {index}: {entry['stopped_by']} at step {step} ({entry['wall_seconds']:.0f} s wall, "
        f"{entry['cpu_seconds']:.0f} s CPU)")
    if terminated:
        raise SystemExit(128 + signal.SIGTERM)
    return entry


def export(run_dir: Path, record: dict, out: Path, log=print) -> Path:
    """Export the newest checkpoint's weights (EMA where the task keeps one) with ``neural-render fit --ckpt_path
    CKPT --export_dir OUT`` at ``max_steps`` = the checkpoint's step (restores, trains nothing, exports), then write
    ``training.json`` (the whole chain, plus what was exported) beside the pipeline."""
    ckpt, step = newest_checkpoint(run_dir)
    if ckpt is None:
        raise NeuralRenderError("nothing to export yet: the run has no checkpoint", run_dir)
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".export-", dir=run_dir) as scratch:
        argv = fit_argv(record["recipe"], Path(scratch)) + [
            "--trainer.max_steps", str(step), "--ckpt_path", str(ckpt), "--export_dir", str(out),
            "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
        log("export: neural-render fit " + " ".join(argv))
        env = dict(os.environ, OMP_NUM_THREADS=str(record["recipe"]["threads"]))
        rc = subprocess.run([sys.executable, "-m", "neural_render", "fit", *argv], env=env, check=False).returncode
    if rc != 0:
        raise NeuralRenderError(f"export failed (neural-render fit exit {rc})", out)
    import torch

    has_ema = "ema" in torch.load(ckpt, map_location="cpu", mmap=True, weights_only=True)
    exported = dict(record, exported={"global_step": step, "weights": "ema" if has_ema else "raw",
                                      "checkpoint": str(ckpt), "date": now(), "run_dir": str(run_dir)})
    write_record(out / RECORD, exported)
    return out
