"""``neural-render autolabel INPUT_DIR --out DIR``: G-buffers for every video of a folder, sharded and resumable.

Inputs (entries of INPUT_DIR, sorted by name, hidden ones skipped): video files (.mp4 .mov .mkv .avi .webm .m4v),
folders of PNG/JPG frames, clip folders (meta.json). Clip id = file stem or folder name (the full file name when two
inputs share a stem). Output per clip: ``DIR/<id>/``, exactly what ``neural-render inverse`` writes, renamed into
place when complete. Then ``DIR/.autolabel/status/<id>.json`` records ``done`` or ``failed`` + reason (a failing
clip never stops the run), and ``DIR/manifest.json`` lists every input with its status (``pending`` when not yet
processed). ``DIR/autolabel.json`` fixes the model and settings: a re-run with other ones is refused.

Resumable: a clip whose status is ``done`` and whose folder is complete is skipped; failed clips are retried; a killed
run leaves at most hidden temporaries (removed by the next run of the same shard) and never a broken clip, and the
re-run's outputs equal an uninterrupted run's (sampling is seeded, writes are deterministic).

Sharding: clip i (in sorted order) belongs to rank ``i % world_size``. Rank and world size come from Lightning when
it runs several processes (``--devices N --num-nodes M``: DDP predict, one process per device, launched by
Lightning), else from the ``RANK`` / ``WORLD_SIZE`` environment variables (independent jobs, e.g. a cluster array),
else 0 / 1. On CPU the default is one process. Exit code 0 when every clip of the shard is done, 1 when some failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HELP = "auto-label a folder of videos with G-buffers: sharded over GPUs/nodes (Lightning DDP predict), resumable"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
STATE_DIR = ".autolabel"
SPEC_NAME = "autolabel.json"
MANIFEST_NAME = "manifest.json"


def add_arguments(parser) -> None:
    from neural_render.cli.inverse import add_model_arguments

    parser.add_argument("input_dir", help="folder of videos, frame folders and/or clip folders")
    parser.add_argument("--out", required=True,
                        help="output folder (one clip folder per input + manifest.json): created, or resumed when a "
                             "previous autolabel output; any other non-empty folder is refused (exit 2), untouched")
    add_model_arguments(parser)
    parser.add_argument("--devices", type=int, default=1, help="processes/devices per node (default 1)")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes (default 1)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu (default auto)")
    parser.add_argument("--strategy", default="ddp", help="Lightning strategy with several processes (default ddp)")


# ---------------------------------------------------------------------------------------------------- inputs
def find_inputs(input_dir: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Sorted (clip id, path) of the usable inputs of ``input_dir`` (module doc); NeuralRenderError when none."""
    from neural_render.errors import NeuralRenderError

    root = Path(input_dir)
    if not root.is_dir():
        raise NeuralRenderError("input folder does not exist", root)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or (skip is not None and entry.resolve() == skip):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            found.append((entry.stem, entry))
        elif entry.is_dir() and ((entry / "meta.json").is_file()
                                 or any(f.suffix.lower() in FRAME_SUFFIXES for f in entry.iterdir() if f.is_file())):
            found.append((entry.name, entry))
    if not found:
        raise NeuralRenderError(f"no videos ({', '.join(VIDEO_SUFFIXES)}), frame folders or clip folders found", root)
    stems = [cid for cid, _ in found]
    return [(path.name if stems.count(cid) > 1 else cid, path) for cid, path in found]


def shard(items: list, rank: int, world_size: int) -> list:
    """Items of ``rank``: every ``world_size``-th item starting at ``rank``."""
    return items[rank::world_size]


def env_rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the environment (0, 1 when unset); NeuralRenderError when inconsistent."""
    from neural_render.errors import NeuralRenderError

    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise NeuralRenderError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise NeuralRenderError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world


# ---------------------------------------------------------------------------------------------------- state
def _write_json(path: Path, data: dict) -> None:
    from neural_render.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_path(out: Path, clip_id: str) -> Path:
    return out / STATE_DIR / "status" / f"{clip_id}.json"


def is_done(out: Path, clip_id: str) -> bool:
    from neural_render.io.clip import is_complete_clip

    status = _read_json(status_path(out, clip_id))
    return bool(status and status.get("status") == "done" and is_complete_clip(out / clip_id))


def _writer_alive(name: str, prefix: str) -> bool:
    """Whether the process that made the temporary ``name`` (``<prefix><pid>-<hex>...``, io/atomic.py) still runs."""
    pid = name[len(prefix):].split("-", 1)[0]
    if not pid.isdigit():
        return True  # not a name we made: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out: Path, clip_ids: list[str]) -> None:
    """Hidden leftovers of KILLED atomic writes of this shard's clips: only those whose writer process is gone (a
    concurrent run's temporaries are never touched)."""
    import shutil

    folders = [out, out / STATE_DIR / "status"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            for cid in clip_ids:
                for prefix in (f".{cid}.tmp-", f".{cid}.old-", f".{cid}.json.tmp-"):
                    if not entry.name.startswith(prefix) or _writer_alive(entry.name, prefix):
                        continue
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)


def check_spec(out: Path, spec: dict) -> None:
    """Write ``autolabel.json`` or refuse a run whose model/settings differ from the folder's."""
    from neural_render.errors import NeuralRenderError

    path = out / SPEC_NAME
    old = _read_json(path) if path.exists() else None
    if path.exists() and old is None:
        raise NeuralRenderError("unreadable autolabel spec", path)
    if old is not None and old != spec:
        diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        raise NeuralRenderError(f"this output folder was labelled with other settings ({', '.join(diff)}); use "
                                f"another --out or the same settings", path)
    if old is None:
        _write_json(path, spec)


def write_manifest(out: Path, items: list[tuple[str, Path]], spec: dict) -> dict:
    clips, counts = {}, {"done": 0, "failed": 0, "pending": 0}
    for cid, path in items:
        status = _read_json(status_path(out, cid)) or {}
        state = status.get("status") if status.get("status") in ("done", "failed") else "pending"
        entry = {"source": str(path), "status": state}
        if state == "failed":
            entry["reason"] = status.get("reason", "")
        if state == "done":
            entry["frames"] = status.get("frames")
        clips[cid] = entry
        counts[state] += 1
    manifest = {"format": "neural_render.autolabel", "version": 1, "spec": spec, "counts": counts, "clips": clips}
    _write_json(out / MANIFEST_NAME, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------------- Lightning
def _first(batch):
    return batch[0]


def label_one(pipe, item: dict, out: Path, args, model_path) -> dict:
    """Label one clip (skip when done); never raises for a bad clip: returns {"id", "status", ...}."""
    import time

    from neural_render.cli.inverse import label_video

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
                summary = label_video(pipe, item["path"], out / cid, args, model_path, owner="autolabel")
                status = {"id": cid, "status": "done", "frames": summary["frames"]}
            except Exception as err:  # noqa: BLE001 - a failing clip is recorded and the run goes on
                reason = err.reason if isinstance(err, NeuralRenderError) else f"{type(err).__name__}: {err}"
                status = {"id": cid, "status": "failed", "reason": reason}
            _write_json(status_path(out, cid), status)
    except NeuralRenderError as err:  # another run holds this clip: it is that run's to finish
        print(f"{cid}: skipped, {err.reason}", flush=True)
        return {"id": cid, "status": "busy", "reason": err.reason}
    seconds = time.perf_counter() - start
    print(f"{cid}: {status['status']}" + (f" ({status['reason']})" if status["status"] == "failed" else
                                           f" ({status['frames']} frames, {seconds:.1f} s)"), flush=True)
    return status


def build_lightning(args, items, out: Path, model_path: Path, spec: dict):
    """(LightningModule, LightningDataModule) for Trainer.predict (classes built lazily: lightning is heavy)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from neural_render.cli.inverse import load_model

    class AutolabelModule(pl.LightningModule):
        """Holds the pipeline's modules (so Lightning places them on this process's device)."""

        def __init__(self):
            super().__init__()
            self.pipe = load_model(model_path)
            self.backbone, self.codec, self.pass_embedding = self.pipe.backbone, self.pipe.codec, self.pipe.pass_embedding
            self.statuses: list[dict] = []

        def predict_step(self, item, batch_idx):
            with torch.no_grad():
                status = label_one(self.pipe, item, out, args, model_path)
            self.statuses.append(status)
            return status

    class AutolabelData(pl.LightningDataModule):
        def predict_dataloader(self):
            trainer = self.trainer
            rank, world = ((trainer.global_rank, trainer.world_size) if trainer is not None and trainer.world_size > 1
                           else env_rank())
            mine = shard(items, rank, world)
            self.rank, self.world, self.mine = rank, world, mine
            remove_stale_temporaries(out, [cid for cid, _ in mine])
            data = [{"id": cid, "path": str(path)} for cid, path in mine]
            return DataLoader(data, batch_size=1, shuffle=False, collate_fn=_first)

    return AutolabelModule(), AutolabelData()


def run(args) -> int:
    import logging
    import warnings

    import lightning.pytorch as pl

    from neural_render.cli.inverse import check_settings, model_dir, parse_size, warn_no_native_size
    from neural_render.errors import NeuralRenderError

    check_settings(args)
    if args.devices < 1 or args.num_nodes < 1:
        raise NeuralRenderError(f"--devices and --num-nodes must be >= 1, got {args.devices}, {args.num_nodes}")
    from neural_render.io.output import open_folder

    out = Path(args.out)
    items = find_inputs(args.input_dir, exclude=out)
    open_folder(out, command="autolabel", inputs=[path for _, path in items], also_owned_if=[SPEC_NAME])
    model_path = model_dir(args.model)
    size = parse_size(args.size)
    spec = {"model": str(model_path.resolve()), "passes": args.passes, "steps": args.steps, "window": args.window,
            "overlap": args.overlap, "size": list(size) if isinstance(size, tuple) else size, "seed": args.seed,
            "fov": args.fov}
    check_spec(out, spec)
    args.no_progress = True  # one line per clip instead of per-window bars (several processes share the terminal)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*treespec, LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    module, data = build_lightning(args, items, out, model_path, spec)
    if not module.pipe.is_trained:
        logging.getLogger(__name__).warning(f"{model_path} is an UNTRAINED model (0 training steps): its G-buffers "
                                            "are meaningless")
    warn_no_native_size(module.pipe, size, model_path)
    processes = args.devices * args.num_nodes
    trainer = pl.Trainer(accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
                         strategy=args.strategy if processes > 1 else "auto", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    trainer.predict(module, datamodule=data, return_predictions=False)
    if trainer.world_size > 1:
        trainer.strategy.barrier("autolabel-done")
    failed = [s for s in module.statuses if s["status"] == "failed"]
    if trainer.is_global_zero:
        manifest = write_manifest(out, items, spec)
        c = manifest["counts"]
        print(f"{out}: {c['done']} done, {c['failed']} failed, {c['pending']} pending of {len(items)} "
              f"(this shard: rank {data.rank} of {data.world}, {len(data.mine)} clips)")
    sys.stdout.flush()
    return 1 if failed else 0
