"""Shared pieces of the evaluation loops: held-out clips, their cluster (env map), splits, JSON output, the test log.

* :func:`clip_group`: the label the hierarchical bootstrap resamples first (:mod:`neural_render.evaluation.stats`):
  the clip's env map for clips lit by an env-map file, the clip itself for a procedural sky (each sky is drawn
  independently) or when nothing is recorded.
* :func:`dataset_split`: ``train`` / ``val`` / ``test`` / None of a synth dataset folder, from its ``synth.json``
  (the recorded split, else the split its env maps belong to, ``data/envmaps/split.json``).
* :func:`real_set_split`: the split of a folder of REAL clips (data/real_footage.py, raw or auto-labelled), which has
  no ``synth.json``: :func:`dataset_split` falls back to it.
* :func:`log_test_scoring`: every scoring of a TEST set is appended to ``test_scorings.jsonl`` in the model folder,
  so how often a test set was looked at is visible beside the model (val is for choices; test is scored once).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

TEST_LOG = "test_scorings.jsonl"


def find_eval_clips(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Clip folders (with meta.json) under ``folder``, sorted; the first ``limit`` when given."""
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError

    if limit is not None and limit < 1:
        raise NeuralRenderError(f"--max-clips must be >= 1, got {limit}")
    clips = find_clips(folder)
    if not clips:
        raise NeuralRenderError("no clip folders (with meta.json) found", folder)
    return clips[:limit] if limit else clips


def clip_group(clip_dir: str | os.PathLike) -> str:
    """Cluster label of a clip for the hierarchical bootstrap (module doc)."""
    from neural_render.io.clip import read_meta

    meta = read_meta(clip_dir)
    env = (meta.extra.get("synth") or {}).get("env") if isinstance(meta.extra, dict) else None
    if isinstance(env, dict) and env.get("kind") == "file" and env.get("name"):
        return f"env:{env['name']}"
    if meta.envmap and not (isinstance(env, dict) and env.get("kind") == "sky"):
        return f"env:{Path(str(meta.envmap)).stem}"
    return f"clip:{Path(clip_dir).name}"


def dataset_split(folder: str | os.PathLike) -> str | None:
    """'train' | 'val' | 'test' (or a named split such as 'test2_table') | None for a dataset folder or any folder
    inside one (module doc): its recorded split, except that a dataset lit by a TEST env map is 'test' whatever it
    records; the spec is ``synth.json`` or ``insert_eval.json`` in the folder or the nearest parent holding one;
    without a spec, :func:`real_set_split` (a folder of real clips)."""
    from neural_render.data_assets import envmap_split

    spec = None
    start = Path(folder).resolve()
    for candidate_dir in (start, *start.parents):
        for name in ("synth.json", "insert_eval.json"):
            try:
                spec = json.loads((candidate_dir / name).read_text())
                break
            except (OSError, ValueError):
                continue
        if spec is not None:
            break
    if not isinstance(spec, dict):
        return real_set_split(folder)
    if spec.get("envmaps") == "test" and "split" not in spec:  # scripts/make_insert_eval_data.py before issue #22:
        return "val"  # its "test" maps are split.json's val maps now (it records the word, not the names)
    names = ({Path(str(e)).stem for e in spec["envmaps"]} if isinstance(spec.get("envmaps"), list)
             else set(envmap_split().get(spec["envmaps"], [])) if isinstance(spec.get("envmaps"), str) else set())
    split = envmap_split()
    if names & set(split.get("test", [])):
        return "test"
    recorded = spec.get("split") or (spec.get("config") or {}).get("split")
    if isinstance(recorded, str):
        return recorded
    for name in ("val", "train"):
        if names & set(split.get(name, [])):
            return name
    return None


def real_set_split(folder: str | os.PathLike) -> str | None:
    """The split of a folder of real clips (or of one such clip), None for anything else: the ``real_set`` a clip's
    meta ``extra`` records (data/real_footage.py; top level or in the auto-labeller's ``inverse`` record; 'test'
    when any clip says so); else, for auto-labelled clips (an ``autolabel.json`` beside them, or meta ``extra``
    holding the ``inverse`` record), the folder's own name when it is ``train`` / ``val`` / ``test``."""
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError
    from neural_render.io.clip import read_meta

    folder = Path(folder)
    if (folder / "meta.json").is_file():
        folder = folder.parent
    try:
        clips = find_clips(folder)
    except NeuralRenderError:
        return None
    recorded, labelled = set(), (folder / "autolabel.json").is_file()
    for clip in clips:
        try:
            extra = read_meta(clip).extra
        except NeuralRenderError:
            continue
        extra = extra if isinstance(extra, dict) else {}
        inverse = extra.get("inverse") if isinstance(extra.get("inverse"), dict) else {}
        labelled = labelled or bool(inverse)
        value = extra.get("real_set", inverse.get("real_set"))
        if isinstance(value, str):
            recorded.add(value)
    if recorded:
        tests = sorted(v for v in recorded if v.startswith("test"))
        return tests[0] if tests else sorted(recorded)[0]
    return folder.name if labelled and folder.name in ("train", "val", "test") else None


def jsonable(x):
    """Plain JSON data: non-finite floats -> None, tuples -> lists, keys -> str."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def write_json(path: str | os.PathLike, record: dict, command: str) -> Path:
    """Write ``record`` atomically with ``written_by`` = the command (io/output.py recognises it); returns the path."""
    from neural_render.io.atomic import atomic_path
    from neural_render.io.output import marker

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"written_by": marker(command), **jsonable(record)}, indent=1,
                                        allow_nan=False) + "\n")
    return path


def log_test_scoring(model_dir: str | os.PathLike | None, data: str | os.PathLike, command: str,
                     json_path: str | os.PathLike | None = None, extra: dict | None = None) -> bool:
    """Append one line to ``<model_dir>/test_scorings.jsonl`` when ``data`` is a TEST split (``test``, ``test2``,
    ``test2_table``, ...); returns whether it did."""
    if model_dir is None or not str(dataset_split(data) or "").startswith("test") or not Path(model_dir).is_dir():
        return False
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command, "data": str(data),
             "json": None if json_path is None else str(json_path), **(extra or {})}
    with open(Path(model_dir) / TEST_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(jsonable(entry)) + "\n")
    return True


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's CPU threads for the block (None: unchanged)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fmt(value, digits: int = 3) -> str:
    """A table cell: n/a for None/NaN, inf, fixed digits for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verdict_cell(row: dict, digits: int = 3) -> str:
    """'clearly better [+lo, +hi]' style cell of a :func:`~neural_render.evaluation.stats.compare_table` row."""
    lo, hi = row["corrected_interval"]
    word = {"better": "BETTER", "worse": "WORSE", "tie": "tie"}[row["verdict"]]
    return f"{word:6s} {row['diff_mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] p_holm={row['p_holm']:.3g}"


def comparison_lines(table: dict, header: str, width: int, digits: int = 3, extra=None) -> list[str]:
    """Text lines of a :func:`~neural_render.evaluation.stats.compare_table` result: ``header`` (formatted with the
    table's ``m`` and ``alpha``), then per row ``"  name"`` padded to ``width``, its :func:`verdict_cell` and
    ``extra(row)`` when given; no lines when the table has no rows."""
    if not table.get("rows"):
        return []
    tail = extra or (lambda row: "")
    return [header.format(m=table["m"], alpha=table.get("alpha")),
            *(f"  {row['name']:{width}s} {verdict_cell(row, digits)}{tail(row)}" for row in table["rows"])]
