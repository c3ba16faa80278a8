"""Inference pipeline over one backbone + codec + denoiser (+ pass embedding), saved diffusers-style.

Pipeline folder (``save_pretrained`` / :func:`export`, written atomically as one folder)::

    model_index.json            format version, pipeline class, one entry per component: class_path + how it is stored
    backbone/                   backbone.save_pretrained (adapter settings + diffusers model, base weights)
    lora/<adapter>/             peft LoRA of each adapter on the backbone (save_lora), if any
    codec/                      codec.save_pretrained, or codec/codec_config.json (init args of weight-free codecs)
    denoiser/denoiser_config.json
    pass_embedding/             PassEmbedding.save_pretrained (config.json + safetensors), if any
    run_config.yaml             the training run's full LightningCLI config, if known

:func:`load_pipeline` / ``from_pretrained`` rebuild every component; only classes under ``neural_render.`` or
``diffusers.`` are imported. A missing or malformed folder raises NeuralRenderError naming the file.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

MODEL_INDEX = "model_index.json"
FORMAT_VERSION = 1
_ALLOWED_PREFIXES = ("neural_render.", "diffusers.")


@dataclass
class VideoPipelineOutput:
    """frames: (B,T,3,H,W) decoded video in [-1,1] (None when decode=False or no codec); latents: (B,T',C,h,w)."""

    frames: Tensor | None
    latents: Tensor


def _class_path(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(path: str, source: Path):
    if not isinstance(path, str) or not path.startswith(_ALLOWED_PREFIXES) or "." not in path:
        raise NeuralRenderError(f"refusing to import class {path!r} (allowed: {_ALLOWED_PREFIXES})", source)
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise NeuralRenderError(f"cannot import {path}: {err}", source) from None


def _init_args_from_attributes(obj) -> dict:
    """Constructor arguments of a weight-free object, read back from same-named attributes (JSON values only)."""
    args = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if hasattr(obj, name):
            value = getattr(obj, name)
            try:
                json.dumps(value)
            except TypeError:
                raise NeuralRenderError(f"cannot store {type(obj).__name__}.{name} ({type(value).__name__}) as JSON")
            args[name] = value
        elif param.default is inspect.Parameter.empty:
            raise NeuralRenderError(f"cannot export {type(obj).__name__}: no attribute for required argument {name!r}")
    return args


def _lora_names(backbone) -> list[str]:
    if not isinstance(getattr(backbone, "model", None), torch.nn.Module):
        return []
    from neural_render.models.lora import lora_adapter_names

    return lora_adapter_names(backbone)


class VideoDiffusionPipeline:
    """Generate latents with the denoiser's sampler and decode them with the codec.

    backbone: VideoBackbone; denoiser: Denoiser; codec: LatentCodec or None; pass_embedding: ids (B,) -> (B,L,D) or None.
    Task pipelines (inverse, forward, sim2real) subclass this and add their own conditioning.
    """

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None):
        self.backbone, self.denoiser, self.codec, self.pass_embedding = backbone, denoiser, codec, pass_embedding
        self.run_config: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def to(self, device) -> VideoDiffusionPipeline:
        for module in (self.backbone, self.codec, self.pass_embedding):
            if isinstance(module, torch.nn.Module):
                module.to(device)
        return self

    def eval(self) -> VideoDiffusionPipeline:
        for module in (self.backbone, self.codec, self.pass_embedding):
            if isinstance(module, torch.nn.Module):
                module.eval()
        return self

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B,T,3,H,W) in [-1,1] -> latents (identity without a codec)."""
        return video if self.codec is None else self.codec.encode(video.to(self.device))

    @torch.no_grad()
    def __call__(self, cond_video: Tensor | None = None, pass_ids: Tensor | list[int] | None = None,
                 latent_shape: tuple[int, ...] | None = None, num_steps: int = 25, guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None, clean: tuple[Tensor, Tensor] | None = None,
                 callback=None, decode: bool = True) -> VideoPipelineOutput:
        """Sample a video.

        cond_video: (B,T,3,H,W) in [-1,1] encoded to the condition latents (channel count must equal the backbone's
        cond_channels). pass_ids: (B,) ids for the pass embedding -> context. latent_shape: (B,T',C,h,w), default from
        the condition latents. clean / callback: see :meth:`Denoiser.sample`. Returns :class:`VideoPipelineOutput`.
        """
        cond = None if cond_video is None else self.encode(cond_video)
        context = None
        if pass_ids is not None:
            if self.pass_embedding is None:
                raise NeuralRenderError("pass_ids given but the pipeline has no pass embedding")
            context = self.pass_embedding(torch.as_tensor(pass_ids, device=self.device).long().reshape(-1))
        if latent_shape is None:
            if cond is None:
                raise NeuralRenderError("give cond_video or latent_shape")
            latent_shape = (*cond.shape[:2], self.backbone.latent_channels, *cond.shape[3:])
        latents = self.denoiser.sample(self.backbone, tuple(latent_shape), cond, context, num_steps=num_steps,
                                       generator=generator, guidance_scale=guidance_scale, clean=clean,
                                       callback=callback, device=self.device)
        frames = self.codec.decode(latents) if decode and self.codec is not None else None
        return VideoPipelineOutput(frames=frames, latents=latents)

    # ------------------------------------------------------------------ settings shared by the task pipelines
    #: training info of the weights ({"global_step": n, ...}) and the default sampler steps; pipelines with a
    #: settings file (inverse, sim2real, propagation) set them in ``configure``
    info: dict | None = None
    num_steps: int | None = None

    @property
    def is_trained(self) -> bool:
        """False when the weights never saw a training step (``info['global_step']`` missing or 0)."""
        return int((self.info or {}).get("global_step", 0) or 0) > 0

    @property
    def stride(self) -> int:
        """Pixel multiple of the processing size: codec spatial factor x backbone spatial multiple."""
        return int(self.codec.spatial_factor) * int(self.backbone.spatial_multiple)

    def default_steps(self) -> int:
        """Sampler steps when none are given: the stored setting, else 1 for the x0 denoiser, else 20."""
        return self.num_steps or (1 if self.denoiser.kind == "x0" else 20)

    # ------------------------------------------------------------------ persistence
    #: files of an existing pipeline folder that a new export keeps: the log of how often the test split was
    #: scored with this model name (evaluation/common.py) must survive retraining into the same folder
    KEPT_ON_EXPORT = ("test_scorings.jsonl",)

    @classmethod
    def _keep_records(cls, directory: str | os.PathLike, tmp: str | os.PathLike) -> None:
        import shutil

        for name in cls.KEPT_ON_EXPORT:
            old = Path(directory) / name
            if old.is_file() and not (Path(tmp) / name).exists():
                shutil.copy2(old, Path(tmp) / name)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the pipeline folder (see module docstring) atomically."""
        from neural_render.io.atomic import atomic_dir, atomic_path

        index: dict = {"_class_name": type(self).__name__, "pipeline_class": _class_path(self),
                       "format_version": FORMAT_VERSION}
        with atomic_dir(directory) as tmp:
            self._keep_records(directory, tmp)
            root = Path(tmp)
            if not hasattr(self.backbone, "save_pretrained"):
                raise NeuralRenderError(f"backbone {type(self.backbone).__name__} has no save_pretrained")
            self.backbone.save_pretrained(root / "backbone")
            loras = _lora_names(self.backbone)
            if loras:
                from neural_render.models.lora import save_lora

                for name in loras:
                    save_lora(self.backbone, root / "lora" / name, adapter_name=name)
            index["backbone"] = {"class_path": _class_path(self.backbone), "folder": "backbone", "lora": loras}
            index["codec"] = self._save_codec(root)
            self.denoiser.save_pretrained(root / "denoiser")
            index["denoiser"] = {"class_path": _class_path(self.denoiser), "folder": "denoiser"}
            if self.pass_embedding is not None:
                self.pass_embedding.save_pretrained(root / "pass_embedding")
                index["pass_embedding"] = {"class_path": _class_path(self.pass_embedding), "folder": "pass_embedding"}
            else:
                index["pass_embedding"] = None
            if self.run_config:
                (root / "run_config.yaml").write_text(self.run_config)
            with atomic_path(root / MODEL_INDEX) as t, open(t, "w") as f:
                json.dump(index, f, indent=2)

    def _save_with_settings(self, directory: str | os.PathLike, name: str, settings: dict) -> None:
        """The base pipeline folder plus one JSON settings file ``name``, written atomically as one folder."""
        from neural_render.io.atomic import atomic_dir

        with atomic_dir(directory) as tmp:
            self._keep_records(directory, tmp)
            VideoDiffusionPipeline.save_pretrained(self, tmp)
            Path(tmp, name).write_text(json.dumps(settings, indent=2))

    @classmethod
    def _load_with_settings(cls, directory: str | os.PathLike, name: str, allowed: set[str], what: str,
                            required: bool = True, adopt: bool = False, device: str | torch.device | None = None):
        """Load a folder of :meth:`_save_with_settings`: the components, then ``configure(**settings, source=folder)``
        with the keys of ``allowed``. what: "an inverse rendering pipeline"... for messages; required: whether the
        settings file must exist; adopt: build ``cls`` whatever pipeline class the folder names (plain
        ``DiffusionSystem.export`` folders), else the folder's own class, which must be a ``cls``.
        Any malformed folder -> NeuralRenderError naming it (never another type)."""
        root = Path(directory)
        if not root.is_dir():
            raise NeuralRenderError("model folder does not exist", root)
        path, settings = root / name, {}
        if required or path.is_file():
            try:
                settings = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise NeuralRenderError(f"not {what} folder: cannot read {name}: {err}", path) from None
            if not isinstance(settings, dict):
                raise NeuralRenderError("not a JSON object", path)
        try:
            load = VideoDiffusionPipeline.from_pretrained.__func__  # the base loader, bound to the class to build
            pipe = load(cls if adopt else VideoDiffusionPipeline, root, device=device)
        except NeuralRenderError:
            raise
        except Exception as err:  # noqa: BLE001 - boundary: a broken folder must not escape as another type
            raise NeuralRenderError(f"not a valid pipeline folder: {type(err).__name__}: {err}", root) from None
        if not isinstance(pipe, cls):
            raise NeuralRenderError(f"folder holds a {type(pipe).__name__}, not {what}", root)
        return pipe.configure(**{k: v for k, v in settings.items() if k in allowed}, source=root)

    def _save_codec(self, root: Path) -> dict | None:
        if self.codec is None:
            return None
        entry = {"class_path": _class_path(self.codec), "folder": "codec"}
        if hasattr(self.codec, "save_pretrained"):
            self.codec.save_pretrained(root / "codec")
            entry["storage"] = "pretrained"
        else:
            (root / "codec").mkdir()
            (root / "codec" / "codec_config.json").write_text(json.dumps(_init_args_from_attributes(self.codec)))
            entry["storage"] = "init_args"
        return entry

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None):
        """Load a pipeline folder written by :meth:`save_pretrained` (or :func:`export`)."""
        root = Path(directory)
        index_path = root / MODEL_INDEX
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError) as err:
            raise NeuralRenderError(f"not a pipeline folder: cannot read {MODEL_INDEX}: {err}", index_path) from None
        if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
            raise NeuralRenderError(f"unsupported pipeline format version {index.get('format_version')!r} "
                                    f"(this reader: {FORMAT_VERSION})", index_path)
        for key in ("backbone", "denoiser"):
            if not isinstance(index.get(key), dict):
                raise NeuralRenderError(f"{MODEL_INDEX} has no {key} entry", index_path)
        entry = index["backbone"]
        backbone = _import_class(entry["class_path"], index_path).from_pretrained(root / entry["folder"])
        if entry.get("lora"):
            from neural_render.models.lora import load_lora

            for name in entry["lora"]:
                load_lora(backbone, root / "lora" / name, adapter_name=name)
        entry = index["denoiser"]
        denoiser = _import_class(entry["class_path"], index_path).from_pretrained(root / entry["folder"])
        codec = None
        if index.get("codec"):
            entry = index["codec"]
            codec_cls = _import_class(entry["class_path"], index_path)
            if entry.get("storage") == "pretrained":
                codec = codec_cls.from_pretrained(root / entry["folder"])
            else:
                path = root / entry["folder"] / "codec_config.json"
                try:
                    codec = codec_cls(**json.loads(path.read_text()))
                except (OSError, ValueError, TypeError) as err:
                    raise NeuralRenderError(f"cannot rebuild codec: {err}", path) from None
        pass_embedding = None
        if index.get("pass_embedding"):
            entry = index["pass_embedding"]
            pass_embedding = _import_class(entry["class_path"], index_path).from_pretrained(root / entry["folder"])
        pipeline_cls = cls
        if index.get("pipeline_class") and cls is VideoDiffusionPipeline:
            pipeline_cls = _import_class(index["pipeline_class"], index_path)
        pipe = pipeline_cls(backbone, denoiser, codec, pass_embedding)
        run_config = root / "run_config.yaml"
        pipe.run_config = run_config.read_text() if run_config.is_file() else None
        if device is not None:
            pipe.to(device)
        return pipe.eval()


def export(system, directory: str | os.PathLike, use_ema: bool = True) -> None:
    """Write a trained DiffusionSystem as a pipeline folder (EMA weights when ``use_ema`` and the system has EMA)."""
    import contextlib

    pipe = system.pipeline()
    pipe.run_config = getattr(system, "run_config", None)
    ctx = system.ema_weights() if use_ema else contextlib.nullcontext()
    with ctx:
        pipe.save_pretrained(directory)


def load_pipeline(directory: str | os.PathLike, device: str | torch.device | None = None) -> VideoDiffusionPipeline:
    """Load any pipeline folder as the pipeline class recorded in it."""
    return VideoDiffusionPipeline.from_pretrained(directory, device=device)
