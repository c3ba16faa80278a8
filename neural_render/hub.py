"""One resolver for model folders, one validation, one loader per pipeline kind.

A model is named by a ``spec``:

* ``None``: the shipped default of the kind (``data/models/inverse_tiny`` for ``inverse``, ``forward_tiny`` for
  ``forward``, ``forward_cache_tiny`` for ``forward_cache``); NeuralRenderError naming the folder and how to make
  one when it is not shipped;
* a path to a folder (an existing path always wins over a shipped name);
* the name of a shipped model (``inverse_tiny``: the folder ``data/models/inverse_tiny``).

Every folder passes the same check (:func:`check_model_folder`): it exists, is a folder, holds a readable
``model_index.json`` (a JSON object), and every component folder the index names exists (our format's
``{"folder": ...}`` entries and diffusers' ``[library, class]`` entries, whose folder is the key). Anything else is
a NeuralRenderError naming the folder (exit 2 in the CLI).

Foreign formats: a DiffusionRenderer checkpoint is recognised by its ``model_index.json`` ``_class_name``
(:data:`DIFFUSION_RENDERER_CLASS`, :func:`is_diffusion_renderer_folder`). It loads through a loader registered with
:func:`register_loader` by a module of :data:`LOADER_MODULES` (imported on first need;
:mod:`neural_render.pipelines.diffusion_renderer_hub` registers the kinds ``inverse`` and ``forward``); a kind no
loader is registered for (``forward_cache``: ``insert``) is refused with a clear "not supported yet".

Loading: :func:`load_model` (``load_inverse``, ``load_forward``, ``load_cache_forward``, ``load_propagation``) builds
the kind's pipeline class from the folder; :func:`load_sim2real` also takes bare IC-LoRA folders; :func:`load_relight`
pairs an inverse and a forward model. Heavy imports happen inside the functions (``--help`` stays fast).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from neural_render.errors import NeuralRenderError

MODEL_INDEX = "model_index.json"
MODELS_FOLDER = "models"  # inside the shipped data folder (neural_render.data_assets.data_dir)
DIFFUSION_RENDERER_CLASS = "RGBXVideoDiffusionPipeline"


@dataclass(frozen=True)
class ModelKind:
    """label: for messages; default: shipped folder name or None; how: how to make such a folder; target:
    "module:attribute" of the pipeline class (its ``from_pretrained(folder, device=)``) or a loader function."""

    label: str
    default: str | None
    how: str
    target: str


KINDS: dict[str, ModelKind] = {
    "inverse": ModelKind("inverse", "inverse_tiny",
                         "train it with scripts/train_inverse_tiny.py, or give a folder written by InverseTask.export "
                         "/ `neural-render fit --export_dir`",
                         "neural_render.pipelines.inverse:InverseRenderingPipeline"),
    "forward": ModelKind("forward", "forward_tiny",
                         "train it with scripts/train_forward_tiny.py, or give a folder written by ForwardTask.export",
                         "neural_render.pipelines.forward:ForwardPipeline"),
    "forward_cache": ModelKind("cache-injection forward", "forward_cache_tiny",
                               "train it with scripts/train_cache_injection.py",
                               "neural_render.pipelines.insert:CacheForwardPipeline"),
    "propagation": ModelKind("anchor propagation", None, "a PropagationTask export",
                             "neural_render.pipelines.sim2real_data:AnchorPropagationPipeline"),
    "sim2real": ModelKind("sim2real", None, "a sim2real task export",
                          "neural_render.pipelines.sim2real:Sim2RealPipeline"),
    "pipeline": ModelKind("", None, "a folder written by `neural-render fit --export_dir`",
                          "neural_render.pipelines.base:load_pipeline"),
}

#: modules imported before a foreign folder is loaded; each calls :func:`register_loader` at import (issue #24:
#: DiffusionRenderer inverse / forward checkpoints; ``forward_cache`` (insert) stays "not supported yet")
LOADER_MODULES: list[str] = ["neural_render.pipelines.diffusion_renderer_hub"]
_LOADERS: dict[tuple[str, str], Callable] = {}
_IMPORTED: set[str] = set()


def register_loader(class_name: str, kind: str, loader: Callable) -> None:
    """Folders whose ``model_index.json`` ``_class_name`` is ``class_name`` load as ``kind`` with
    ``loader(folder: Path, device: torch.device | None) -> pipeline``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (one of {sorted(KINDS)})")
    _LOADERS[(class_name, kind)] = loader


def _foreign_loader(class_name: str, kind: str) -> Callable | None:
    for module in LOADER_MODULES:
        if module not in _IMPORTED:
            importlib.import_module(module)
            _IMPORTED.add(module)
    return _LOADERS.get((class_name, kind))


def _kind(kind: str) -> ModelKind:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (one of {sorted(KINDS)})")
    return KINDS[kind]


def _what(kind: str) -> str:
    label = _kind(kind).label
    return f"{label} pipeline" if label else "pipeline"


def read_model_index(folder: str | os.PathLike) -> dict | None:
    """The folder's model_index.json as a dict; None when it is missing, unreadable or not a JSON object."""
    try:
        index = json.loads((Path(folder) / MODEL_INDEX).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def pipeline_class_name(index: dict) -> str | None:
    """The pipeline class a model_index.json names: ``_class_name`` ("Name", or [module, "Name"] for a pipeline
    class defined in a file of the folder, diffusers' custom pipelines)."""
    name = index.get("_class_name")
    if isinstance(name, (list, tuple)) and name:
        name = name[-1]
    return name if isinstance(name, str) else None


def is_diffusion_renderer_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a DiffusionRenderer checkpoint (model_index.json ``_class_name`` ==
    :data:`DIFFUSION_RENDERER_CLASS`)."""
    index = read_model_index(folder)
    return index is not None and pipeline_class_name(index) == DIFFUSION_RENDERER_CLASS


def _component_folders(index: dict) -> list[str]:
    """Sub-folders the index names: ``{"folder": name}`` entries (ours) and ``[library, class]`` entries (diffusers:
    the folder is the key)."""
    names = []
    for key, value in index.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict) and isinstance(value.get("folder"), str):
            names.append(value["folder"])
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
            names.append(key)
    return names


def check_model_folder(folder: str | os.PathLike, kind: str = "pipeline") -> Path:
    """The one validation of a model folder (module doc); returns it as a Path, NeuralRenderError naming it else."""
    root = Path(folder)
    if not root.exists():
        raise NeuralRenderError("model folder does not exist", root)
    if not root.is_dir():
        raise NeuralRenderError(f"not a {_what(kind)} folder: a file, not a folder", root)
    index = read_model_index(root)
    if index is None:
        raise NeuralRenderError(f"not a {_what(kind)} folder: no readable {MODEL_INDEX} (a JSON object); "
                                f"expected {_kind(kind).how}", root)
    class_name = pipeline_class_name(index)
    if class_name == DIFFUSION_RENDERER_CLASS and _foreign_loader(class_name, kind) is None:
        raise NeuralRenderError(f"a DiffusionRenderer checkpoint ({MODEL_INDEX} _class_name {class_name}): loading "
                                f"it as a {_what(kind)} is not supported yet", root)
    missing = [name for name in _component_folders(index) if not (root / name).is_dir()]
    if missing:
        raise NeuralRenderError(f"incomplete {_what(kind)} folder: {MODEL_INDEX} names the component folder(s) "
                                f"{', '.join(missing)}, which are missing", root)
    return root


def shipped_model(name: str) -> Path | None:
    """``data/models/<name>`` when it holds a model_index.json, else None (also when no data folder is found)."""
    from neural_render.data_assets import data_dir

    try:
        folder = data_dir() / MODELS_FOLDER / name
    except NeuralRenderError:
        return None
    return folder if (folder / MODEL_INDEX).is_file() else None


def default_model(kind: str) -> Path | None:
    """The shipped default folder of ``kind`` when it is shipped here, else None."""
    name = _kind(kind).default
    return shipped_model(name) if name else None


def shipped_names() -> list[str]:
    """Names of the shipped models (folders of data/models with a model_index.json)."""
    from neural_render.data_assets import data_dir

    try:
        root = data_dir() / MODELS_FOLDER
    except NeuralRenderError:
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{MODEL_INDEX}"))


def resolve_model(spec: str | os.PathLike | None, kind: str = "pipeline", option: str = "--model") -> Path:
    """spec (None, a folder path or a shipped model name; module doc) -> the checked model folder.

    kind: a key of :data:`KINDS` (its default and its messages); option: the command-line option that names the
    folder, for the message when the default is not shipped."""
    from neural_render.data_assets import data_dir

    info = _kind(kind)
    if spec is None:
        if info.default is None:
            raise NeuralRenderError(f"give {option} DIR ({info.how}): there is no shipped {_what(kind)}")
        folder = data_dir() / MODELS_FOLDER / info.default
        if not (folder / MODEL_INDEX).is_file():
            raise NeuralRenderError(f"no shipped {info.label} model here; pass {option} DIR ({info.how})", folder)
        return check_model_folder(folder, kind)
    path = Path(spec)
    if not path.exists() and path.name == os.fspath(spec) and shipped_model(path.name) is not None:
        return check_model_folder(shipped_model(path.name), kind)
    if not path.exists():
        names = shipped_names()
        shipped = f" (shipped model names: {', '.join(names)})" if names else ""
        raise NeuralRenderError(f"model folder does not exist{shipped}", path)
    return check_model_folder(path, kind)


def _target(kind: str):
    module, _, name = _kind(kind).target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_model(spec: str | os.PathLike | None, kind: str = "pipeline", device=None, option: str = "--model"):
    """Resolve, check and load a model folder as the pipeline of ``kind``; device: torch.device, a name for
    :func:`neural_render.devices.resolve_device` ('auto', 'cpu', 'cuda:1'), or None (where it was saved: cpu)."""
    if isinstance(device, str):
        from neural_render.devices import resolve_device

        device = resolve_device(device)
    folder = resolve_model(spec, kind, option)
    class_name = pipeline_class_name(read_model_index(folder) or {})
    loader = _foreign_loader(class_name, kind) if class_name == DIFFUSION_RENDERER_CLASS else None
    if loader is not None:
        return loader(folder, device)
    target = _target(kind)
    load = getattr(target, "from_pretrained", target)
    return load(folder, device=device)


def load_inverse(spec=None, device=None, option: str = "--model"):
    """An :class:`~neural_render.pipelines.inverse.InverseRenderingPipeline` (default: the shipped inverse_tiny)."""
    return load_model(spec, "inverse", device, option)


def load_forward(spec=None, device=None, option: str = "--model"):
    """A :class:`~neural_render.pipelines.forward.ForwardPipeline` (default: the shipped forward_tiny)."""
    return load_model(spec, "forward", device, option)


def load_cache_forward(spec=None, device=None, option: str = "--model"):
    """A :class:`~neural_render.pipelines.insert.CacheForwardPipeline` (any forward folder; default: the shipped
    forward_cache_tiny)."""
    return load_model(spec, "forward_cache", device, option)


def load_propagation(spec, device=None, option: str = "--model"):
    """An :class:`~neural_render.pipelines.sim2real_data.AnchorPropagationPipeline` (no shipped default)."""
    return load_model(spec, "propagation", device, option)


def resolve_cache_forward(spec=None, option: str = "--model") -> tuple[Path, str | None]:
    """(folder, note) of the forward model used for insertion: ``spec``, else the shipped cache-injection model,
    else the shipped plain forward model with a note saying so."""
    if spec is not None:  # a plain forward folder is fine too (no injection)
        return resolve_model(spec, "forward", option), None
    folder = default_model("forward_cache")
    if folder is not None:
        return check_model_folder(folder, "forward_cache"), None
    plain = resolve_model(None, "forward", option)
    shipped = plain.parent / KINDS["forward_cache"].default
    return plain, f"no shipped cache-injection model ({shipped}); using the plain forward model"


def load_relight(inverse=None, forward=None, device: str = "cpu", need_inverse: bool = True):
    """A :class:`~neural_render.pipelines.relight.RelightPipeline` of an inverse and a forward model (defaults: the
    shipped ones; the inverse is not loaded when ``need_inverse`` is False, e.g. G-buffers are given)."""
    from neural_render.pipelines.relight import RelightPipeline

    inverse_pipe = load_inverse(inverse, device, option="--inverse-model") if need_inverse else None
    return RelightPipeline(inverse_pipe, load_forward(forward, device))


def load_sim2real(lora: str | os.PathLike, base: str | os.PathLike | None = None):
    """A :class:`~neural_render.pipelines.sim2real.Sim2RealPipeline` from a sim2real model folder, or from a bare
    IC-LoRA folder (``ic_lora.json`` + peft files) + its base pipeline folder (``base`` or the one its info names,
    relative to the LoRA folder unless absolute or existing)."""
    from neural_render.models.ic_lora import IC_LORA_FILE, check_lora_fits, load_ic_lora, read_ic_lora_info
    from neural_render.pipelines.sim2real import SIM2REAL_CONFIG, Sim2RealPipeline

    root = Path(lora)
    if not root.is_dir():
        raise NeuralRenderError("no such LoRA / model folder", root)
    if (root / SIM2REAL_CONFIG).is_file():
        if base is not None:
            raise NeuralRenderError("--base is only for bare IC-LoRA folders; this is a full sim2real model", root)
        return load_model(root, "sim2real", option="--lora")
    if not (root / IC_LORA_FILE).is_file():
        raise NeuralRenderError(f"neither a sim2real model ({SIM2REAL_CONFIG}) nor an IC-LoRA folder ({IC_LORA_FILE})",
                                root)
    record = read_ic_lora_info(root)
    info = record.get("info", {})
    base = base or info.get("base")
    if base is None:
        raise NeuralRenderError("bare IC-LoRA folder: give the base pipeline with --base", root)
    base_path = Path(base) if Path(base).is_absolute() or Path(base).exists() else root / base
    pipe = load_model(base_path, "pipeline", option="--base")
    check_lora_fits(pipe.backbone, record, root)
    load_ic_lora(pipe.backbone, root)
    return Sim2RealPipeline(pipe.backbone, pipe.denoiser, pipe.codec, None, target=info.get("target", "residual"),
                            adapter=record.get("adapter_name"), num_steps=info.get("num_steps"),
                            window=int(info.get("window", 8)), overlap=int(info.get("overlap", 2)),
                            info={"global_step": int(info.get("global_step", 0) or 0), "lora": os.fspath(root)})
