"""Pipeline folders: ``model_index.json`` readable by diffusers and by ``load_pipeline`` (pipelines/base.py).

Layout (format 2, written by ``save_pretrained``)::

    model_index.json        diffusers' pipeline index: "_class_name": ["neural_render_pipeline", <class name>], one
                            [library, class] entry per component ([null, null] when absent), and our own block
                            "_neural_render": {"format_version": 2, "pipeline_class": <dotted path>, "settings_file"}
    neural_render_pipeline.py   loader shim: imports the pipeline class and the component modules from the installed
                            neural_render package (no code of the model's own)
    backbone/  codec/  denoiser/  [pass_embedding/  domain_shifters/  cache_injection/]  each component's own
                            ``save_pretrained`` folder; lora/<adapter>/ the backbone's peft LoRA adapters
    <task>_config.json      the pipeline's settings (inverse_config.json, forward_config.json, ...), if it has any
    run_config.yaml         the training run's LightningCLI config, if known

diffusers: ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` resolves a ``_class_name`` list
[file, class] through the file ``<file>.py`` in the folder (diffusers' custom-pipeline mechanism, which needs
``trust_remote_code``; the shim holds imports only). Components resolve as [library, class]: diffusers takes a
non-diffusers library from ``sys.modules`` (the shim imports them) and calls the class's ``from_pretrained`` on the
sub-folder of the same name (hence every component class derives from diffusers' ``ModelMixin`` or
``SchedulerMixin``, and its module names that base). The pipeline is then built with the components only; the
settings file and run_config.yaml are read when diffusers records where the pipeline came from
(``register_to_config(_name_or_path=...)``, see ``VideoDiffusionPipeline.register_to_config``).

Format 1 (folders exported before issue #25) is read too: entries ``{"class_path", "folder", ...}``, a codec
``storage`` of "init_args" or "pretrained", LoRA names in the backbone entry, domain_shifters/ and cache_injection/
found by their folders. Only classes under ``neural_render.`` or ``diffusers.`` are imported.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from neural_render.errors import NeuralRenderError

MODEL_INDEX = "model_index.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SHIM = "neural_render_pipeline"
_ALLOWED_PREFIXES = ("neural_render.", "diffusers.")
#: format-1 folders named these optional components by their folder only
_FOLDER_COMPONENTS = {"domain_shifters": "neural_render.models.domain_shifter.DomainShifters",
                      "cache_injection": "neural_render.models.cache_injection.CacheInjection"}
_LORA = "neural_render.models.lora.LoraAdapters"


def class_path(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str, source: Path):
    """The class at dotted ``path`` (only under neural_render. / diffusers.; NeuralRenderError naming ``source``)."""
    if not isinstance(path, str) or not path.startswith(_ALLOWED_PREFIXES) or "." not in path:
        raise NeuralRenderError(f"refusing to import class {path!r} (allowed: {_ALLOWED_PREFIXES})", source)
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise NeuralRenderError(f"cannot import {path}: {err}", source) from None


def read_index(root: Path) -> dict:
    """model_index.json of ``root`` as a dict with a readable format version (NeuralRenderError naming it else)."""
    path = root / MODEL_INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NeuralRenderError(f"not a pipeline folder: cannot read {MODEL_INDEX}: {err}", path) from None
    if not isinstance(index, dict):
        raise NeuralRenderError("not a JSON object", path)
    version = format_version(index)
    if version not in READABLE_VERSIONS:
        raise NeuralRenderError(f"unsupported pipeline format version {version!r} (this reader: "
                                f"{list(READABLE_VERSIONS)})", path)
    return index


def format_version(index: dict):
    block = index.get("_neural_render")
    return block.get("format_version") if isinstance(block, dict) else index.get("format_version")


def pipeline_class_path(index: dict) -> str | None:
    block = index.get("_neural_render")
    return block.get("pipeline_class") if isinstance(block, dict) else index.get("pipeline_class")


def components(index: dict, root: Path) -> dict[str, tuple[str, dict]]:
    """{component name: (dotted class path, from_pretrained keyword arguments)} of a folder's index (both formats);
    absent components are left out. The sub-folder of each is ``root / name``."""
    source = root / MODEL_INDEX
    out: dict[str, tuple[str, dict]] = {}
    if format_version(index) == 1:
        for key in ("backbone", "denoiser"):
            if not isinstance(index.get(key), dict):
                raise NeuralRenderError(f"{MODEL_INDEX} has no {key} entry", source)
        for key in ("backbone", "denoiser", "codec", "pass_embedding"):
            entry = index.get(key)
            if entry:
                if not isinstance(entry, dict) or entry.get("folder", key) != key:
                    raise NeuralRenderError(f"{MODEL_INDEX}: bad {key} entry {entry!r}", source)
                out[key] = (entry.get("class_path"), {})
        names = index["backbone"].get("lora") or []
        if names:
            out["lora"] = (_LORA, {"names": list(names)})
        for key, path in _FOLDER_COMPONENTS.items():
            if (root / key).is_dir():
                out[key] = (path, {})
        return out
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] is None:
            continue
        library, name = value
        if not isinstance(library, str) or not isinstance(name, str):
            raise NeuralRenderError(f"{MODEL_INDEX}: bad component entry {key}: {value!r}", source)
        out[key] = (f"{library}.{name}", {})
    for key in ("backbone", "denoiser"):
        if key not in out:
            raise NeuralRenderError(f"{MODEL_INDEX} has no {key} entry", source)
    return out


def load_components(index: dict, root: Path, accepted: set[str]) -> dict:
    """Instantiate the index's components the pipeline class accepts (its ``__init__`` parameter names)."""
    built = {}
    for name, (path, kwargs) in components(index, root).items():
        if name in accepted:
            built[name] = import_class(path, root / MODEL_INDEX).from_pretrained(root / name, **kwargs)
    return built


def index_of(pipe, settings_file: str | None) -> dict:
    """The format-2 model_index.json of ``pipe`` (diffusers' [library, class] entries from its registered modules)."""
    import diffusers

    index: dict = {"_class_name": [SHIM, type(pipe).__name__], "_diffusers_version": diffusers.__version__,
                   "_neural_render": {"format_version": FORMAT_VERSION, "pipeline_class": class_path(pipe),
                                      "settings_file": settings_file}}
    for name in pipe.component_names():
        module = None if name == "lora" else getattr(pipe, name, None)
        if name == "lora" and pipe.lora_names():
            library, _, cls = _LORA.rpartition(".")
            index[name] = [library, cls]
        elif module is None:
            index[name] = [None, None]
        else:
            index[name] = [type(module).__module__, type(module).__qualname__]
    return index


def shim_source(index: dict) -> str:
    """The loader shim of a format-2 index: imports of every component module and of the pipeline class."""
    module, _, name = index["_neural_render"]["pipeline_class"].rpartition(".")
    libraries = sorted({v[0] for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]})
    lines = ['"""Loader shim written by neural_render (no code of this model): diffusers\' '
             'DiffusionPipeline.from_pretrained(folder,',
             'trust_remote_code=True) takes the pipeline class from here and the components named in model_index.json',
             'from sys.modules, so this imports them from the installed neural_render package."""', ""]
    lines += [f"import {lib}  # noqa: F401" for lib in libraries]
    lines += [f"from {module} import {name}  # noqa: F401", ""]
    return "\n".join(lines)


def index_summary(folder) -> dict:
    """{"pipeline", "backbone", "codec"}: class names recorded in a folder's model_index.json (either format; "?" for
    what it does not say), e.g. for reports."""
    try:
        index = json.loads((Path(folder) / MODEL_INDEX).read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    name = index.get("_class_name", "?")
    out = {"pipeline": name[-1] if isinstance(name, list) and name else str(name)}
    for key in ("backbone", "codec"):
        entry = index.get(key)
        if isinstance(entry, dict):
            out[key] = str(entry.get("class_path", "?")).rsplit(".", 1)[-1]
        elif isinstance(entry, list) and len(entry) == 2 and entry[1]:
            out[key] = str(entry[1])
        else:
            out[key] = "?"
    return out
