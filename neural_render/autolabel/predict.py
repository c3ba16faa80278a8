"""``neural-render autolabel`` on Lightning: ``Trainer.predict`` labels this process's shard of the inputs.

Rank and world size come from Lightning when it runs several processes (``devices`` x ``num_nodes``: DDP predict,
one process per device, launched by Lightning), else from the ``RANK`` / ``WORLD_SIZE`` environment variables
(independent jobs, e.g. a cluster array), else 0 / 1. Resumable: a clip whose status is ``done`` and whose folder is
complete is skipped, failed clips are retried; a killed run leaves at most hidden temporaries (removed by the next
run of the same shard) and never a broken clip, and the re-run's outputs equal an uninterrupted run's (sampling is
seeded, writes are deterministic). Importing this module imports Lightning and torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from neural_render.autolabel.inputs import env_rank, find_inputs, shard
from neural_render.autolabel.state import (
    SPEC_NAME,
    check_spec,
    is_done,
    remove_stale_temporaries,
    status_path,
    write_json,
    write_manifest,
)
from neural_render.autolabel.video import InverseSettings, label_video, resolve_settings, warn_no_native_size

log = logging.getLogger(__name__)


def _first(batch):
    return batch[0]


def _silent(line: str) -> None:
    pass


def label_one(pipe, item: dict, out: Path, settings: InverseSettings, model_path,
              report: Callable[[str], None] = _silent) -> dict:
    """Label one clip (``item``: {"id", "path"}; skipped when done); never raises for a bad clip: returns
    {"id", "status", ...} and records it. report: gets one line per clip (done / failed / skipped)."""
    import time

    from neural_render.errors import NeuralRenderError
    from neural_render.io.output import output_lock

    cid = item["id"]
    if is_done(out, cid):
        return {"id": cid, "status": "done", "skipped": True}
    start = time.perf_counter()
    try:
        with output_lock(out / cid, "autolabel"):
            if is_done(out, cid):  # finished by a concurrent run while we waited for nothing
                return {"id": cid, "status": "done", "skipped": True}
            try:
                summary = label_video(pipe, item["path"], out / cid, settings, model_path, owner="autolabel")
                status = {"id": cid, "status": "done", "frames": summary["frames"]}
            except Exception as err:  # noqa: BLE001 - a failing clip is recorded and the run goes on
                reason = err.reason if isinstance(err, NeuralRenderError) else f"{type(err).__name__}: {err}"
                status = {"id": cid, "status": "failed", "reason": reason}
            write_json(status_path(out, cid), status)
    except NeuralRenderError as err:  # another run holds this clip: it is that run's to finish
        report(f"{cid}: skipped, {err.reason}")
        return {"id": cid, "status": "busy", "reason": err.reason}
    seconds = time.perf_counter() - start
    report(f"{cid}: {status['status']}" + (f" ({status['reason']})" if status["status"] == "failed" else
                                            f" ({status['frames']} frames, {seconds:.1f} s)"))
    return status


def pipeline_modules(pipe, prefix: str = "") -> dict[str, torch.nn.Module]:
    """The torch modules of a diffusers pipeline, also those of pipelines among its components (a DiffusionRenderer
    inverse pipeline holds its sampler, which holds the UNet and VAE): {name: module}, names joined by "_"."""
    from diffusers import DiffusionPipeline

    found = {}
    for name, value in pipe.components.items():
        if isinstance(value, torch.nn.Module):
            found[prefix + name] = value
        elif isinstance(value, DiffusionPipeline):
            found.update(pipeline_modules(value, f"{prefix}{name}_"))
    return found


class AutolabelModule(pl.LightningModule):
    """Holds the inverse pipeline's modules in ``models`` (so Lightning places them on this process's device); each
    predict step labels one clip with :func:`label_one`."""

    def __init__(self, model_path: Path, out: Path, settings: InverseSettings,
                 report: Callable[[str], None] = _silent):
        super().__init__()
        from neural_render import hub

        self.pipe = hub.load_inverse(model_path)
        self.models = torch.nn.ModuleDict(pipeline_modules(self.pipe))
        self.out, self.settings, self.model_path, self.report = out, settings, model_path, report
        self.statuses: list[dict] = []

    def predict_step(self, item, batch_idx):
        with torch.no_grad():
            status = label_one(self.pipe, item, self.out, self.settings, self.model_path, self.report)
        self.statuses.append(status)
        return status


class AutolabelData(pl.LightningDataModule):
    """The clips of this process's shard (module doc), one per batch; removes their stale temporaries first."""

    def __init__(self, items: list[tuple[str, Path]], out: Path):
        super().__init__()
        self.items, self.out = items, out
        self.rank, self.world, self.mine = 0, 1, []

    def predict_dataloader(self):
        trainer = self.trainer
        rank, world = ((trainer.global_rank, trainer.world_size) if trainer is not None and trainer.world_size > 1
                       else env_rank())
        self.rank, self.world, self.mine = rank, world, shard(self.items, rank, world)
        remove_stale_temporaries(self.out, [cid for cid, _ in self.mine])
        data = [{"id": cid, "path": str(path)} for cid, path in self.mine]
        return DataLoader(data, batch_size=1, shuffle=False, collate_fn=_first)


@dataclass
class AutolabelReport:
    """inputs: clips found; rank / world: this process and the number of shards; clips: clips of this shard;
    failed: clips of this shard that failed; counts: the manifest's done / failed / pending (rank 0 only, else None)."""

    inputs: int
    rank: int
    world: int
    clips: int
    failed: int
    counts: dict | None


def autolabel_folder(input_dir: str | os.PathLike, out: str | os.PathLike, settings: InverseSettings,
                     model: str | os.PathLike | None = None, devices: int = 1, num_nodes: int = 1,
                     accelerator: str = "auto", strategy: str = "ddp",
                     report: Callable[[str], None] = _silent) -> AutolabelReport:
    """Label every input of ``input_dir`` of this process's shard into ``out`` (created, or resumed when it is a
    previous autolabel output of the same model and settings; any other non-empty folder is refused).

    model: hub spec of the inverse model (None: the shipped inverse_tiny; a DiffusionRenderer inverse folder loads
    too; window / overlap left None in ``settings`` are the model's, recorded resolved); devices / num_nodes /
    accelerator / strategy: Lightning's (the strategy only with several processes); report: gets one line per
    clip."""
    from neural_render import hub
    from neural_render.io.output import open_folder

    out = Path(out)
    items = find_inputs(input_dir, exclude=out)
    open_folder(out, command="autolabel", inputs=[path for _, path in items], also_owned_if=[SPEC_NAME])
    model_path = hub.resolve_model(model, "inverse")
    module = AutolabelModule(model_path, out, settings, report)
    # the model's window / overlap where none is given; one line per clip, not per-window bars
    settings = module.settings = resolve_settings(InverseSettings(**{**vars(settings), "progress": False}),
                                                  module.pipe)
    size = settings.size
    spec = {"model": str(model_path.resolve()), "passes": settings.passes, "steps": settings.steps,
            "window": settings.window, "overlap": settings.overlap,
            "size": list(size) if isinstance(size, tuple) else size, "seed": settings.seed, "fov": settings.fov}
    check_spec(out, spec)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*treespec, LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    data = AutolabelData(items, out)
    if not module.pipe.is_trained:
        log.warning(f"{model_path} is an UNTRAINED model (0 training steps): its G-buffers are meaningless")
    warn_no_native_size(module.pipe, size, model_path)
    processes = devices * num_nodes
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                         strategy=strategy if processes > 1 else "auto", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    trainer.predict(module, datamodule=data, return_predictions=False)
    if trainer.world_size > 1:
        trainer.strategy.barrier("autolabel-done")
    failed = sum(s["status"] == "failed" for s in module.statuses)
    counts = write_manifest(out, items, spec)["counts"] if trainer.is_global_zero else None
    return AutolabelReport(len(items), data.rank, data.world, len(data.mine), failed, counts)
