"""The child side of a training chain (:mod:`neural_render.training_chain`): one segment of ``neural-render fit``.

Started by the runner as ``python -m neural_render.training_segment segment SPEC_JSON``: builds the LightningCLI
(:func:`neural_render.tasks.fit_cli.build_cli`), adds the chain's checkpoint callback (atomic ``last.ckpt`` every K
minutes / steps, on SIGTERM and at the end), gives the segment its own time budget and trains from the run's newest
checkpoint. Everything about the chain record lives in the runner module.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from neural_render.training_chain import CKPT_DIR, LAST


def _seeds(tree, prefix="") -> dict:
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if "seed" in str(key) and (value is None or isinstance(value, (int, bool))):
                out[name] = value
            else:
                out.update(_seeds(value, name))
    return out


def chain_checkpoint(path: Path, every_minutes: float, every_steps: int = 0):
    """Callback: save ``path`` atomically every ``every_minutes`` of wall clock (and every ``every_steps`` steps when
    > 0), on SIGTERM (at the end of the current step) and at the end of training."""
    import lightning.pytorch as pl

    from neural_render.io.atomic import atomic_path

    class ChainCheckpoint(pl.Callback):
        def __init__(self):
            self.last_time, self.saved_step = time.monotonic(), None

        def save(self, trainer):
            if self.saved_step == trainer.global_step:
                return
            if trainer.is_global_zero:
                with atomic_path(path) as tmp:
                    trainer.save_checkpoint(tmp)
            else:
                trainer.save_checkpoint(str(path))  # collective call; only rank 0 writes
            self.saved_step, self.last_time = trainer.global_step, time.monotonic()

        def on_train_start(self, trainer, module):
            self.last_time = time.monotonic()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            due = time.monotonic() - self.last_time >= every_minutes * 60
            if due or (every_steps > 0 and trainer.global_step % every_steps == 0):
                self.save(trainer)

        def on_train_end(self, trainer, module):
            self.save(trainer)

        def on_exception(self, trainer, module, exception):
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            if isinstance(exception, SIGTERMException):  # raised between steps: the state is consistent
                self.save(trainer)

    return ChainCheckpoint()


def worker(spec: dict) -> int:
    """Child side of :func:`run_segment`: ``build_cli`` + fit with the chain checkpoint, then a result JSON."""
    import torch
    from lightning.pytorch.callbacks import Checkpoint, Timer

    from neural_render.io.atomic import atomic_path
    from neural_render.tasks.fit_cli import build_cli

    torch.set_num_threads(int(spec["threads"]))
    run_dir = Path(spec["run_dir"])
    cli = build_cli(spec["argv"])
    trainer = cli.trainer
    # the chain's checkpoint replaces Lightning's default one (which would write per-version epoch checkpoints)
    trainer.callbacks[:] = [cb for cb in trainer.callbacks if not isinstance(cb, Checkpoint)]
    trainer.callbacks.append(chain_checkpoint(run_dir / CKPT_DIR / LAST, float(spec["checkpoint_minutes"]),
                                              int(spec.get("checkpoint_every_steps") or 0)))
    for cb in trainer.callbacks:  # max_time is per segment: do not restore the elapsed time Lightning's Timer
        if isinstance(cb, Timer):  # saved in the checkpoint (a resumed segment would stop at once)
            cb.load_state_dict = lambda state_dict: None
    ckpt = cli.config.get("ckpt_path")
    stopped = None
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    except SystemExit:  # SIGTERMException (the checkpoint was saved in on_exception)
        stopped = "killed"
    step = int(trainer.global_step)
    if stopped is None:
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        if step >= int(trainer.max_steps):
            stopped = "max_steps"
        elif timer is not None and (timer.time_remaining() or 0) <= 0:
            stopped = "max_time"
        else:
            stopped = "other"
    import yaml

    result = {"global_step": step, "stopped_by": stopped, "log_dir": trainer.log_dir,
              "seeds": _seeds(yaml.safe_load(cli.model.run_config or "{}"))}
    if trainer.is_global_zero:
        with atomic_path(spec["result"]) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    return 143 if stopped == "killed" else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "segment":
        sys.exit(worker(json.loads(sys.argv[2])))
    sys.exit("usage: python -m neural_render.training_segment segment SPEC_JSON (started by scripts/train_chain.py)")
