"""What an autolabel output folder records (DIR = ``--out``):

* ``DIR/autolabel.json`` (:data:`SPEC_NAME`): the model and settings; a re-run with other ones is refused;
* ``DIR/.autolabel/status/<id>.json``: ``done`` or ``failed`` + reason per clip (a failing clip never stops the run);
* ``DIR/manifest.json`` (:data:`MANIFEST_NAME`): every input with its status (``pending`` when not yet processed).

A clip is done when its status says so and its folder is complete; hidden leftovers of killed atomic writes are
removed only when their writer process is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_DIR = ".autolabel"
SPEC_NAME = "autolabel.json"
MANIFEST_NAME = "manifest.json"


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented, key-sorted JSON at ``path``, atomically."""
    from neural_render.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``; None when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_path(out: Path, clip_id: str) -> Path:
    return out / STATE_DIR / "status" / f"{clip_id}.json"


def is_done(out: Path, clip_id: str) -> bool:
    """Whether the clip's status is ``done`` and its folder is a complete clip."""
    from neural_render.io.clip import is_complete_clip

    status = read_json(status_path(out, clip_id))
    return bool(status and status.get("status") == "done" and is_complete_clip(out / clip_id))


def writer_alive(name: str, prefix: str) -> bool:
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
    """Hidden leftovers of KILLED atomic writes of these clips: only those whose writer process is gone (a
    concurrent run's temporaries are never touched)."""
    import shutil

    folders = [out, out / STATE_DIR / "status"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            for cid in clip_ids:
                for prefix in (f".{cid}.tmp-", f".{cid}.old-", f".{cid}.json.tmp-"):
                    if not entry.name.startswith(prefix) or writer_alive(entry.name, prefix):
                        continue
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)


def check_spec(out: Path, spec: dict) -> None:
    """Write ``autolabel.json`` or refuse a run whose model/settings differ from the folder's."""
    from neural_render.errors import NeuralRenderError

    path = out / SPEC_NAME
    old = read_json(path) if path.exists() else None
    if path.exists() and old is None:
        raise NeuralRenderError("unreadable autolabel spec", path)
    if old is not None and old != spec:
        diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        raise NeuralRenderError(f"this output folder was labelled with other settings ({', '.join(diff)}); use "
                                f"another --out or the same settings", path)
    if old is None:
        write_json(path, spec)


def write_manifest(out: Path, items: list[tuple[str, Path]], spec: dict) -> dict:
    """Write and return ``manifest.json``: format, version, spec, counts (done / failed / pending), clips."""
    clips, counts = {}, {"done": 0, "failed": 0, "pending": 0}
    for cid, path in items:
        status = read_json(status_path(out, cid)) or {}
        state = status.get("status") if status.get("status") in ("done", "failed") else "pending"
        entry = {"source": str(path), "status": state}
        if state == "failed":
            entry["reason"] = status.get("reason", "")
        if state == "done":
            entry["frames"] = status.get("frames")
        clips[cid] = entry
        counts[state] += 1
    manifest = {"format": "neural_render.autolabel", "version": 1, "spec": spec, "counts": counts, "clips": clips}
    write_json(out / MANIFEST_NAME, manifest)
    return manifest
