"""Inference pipelines: ``diffusers.DiffusionPipeline`` subclasses over backbone + denoiser (+ codec, pass embedding).

Every task pipeline (inverse, forward, cache forward, relight, sim2real, propagation) derives from
:class:`VideoDiffusionPipeline` and follows diffusers' conventions: components are registered with
``register_modules`` (``pipe.components``, ``pipe.config``); ``__call__`` is the entry point and takes a
``generator`` (``seed=`` is accepted as an alias that builds one), ``output_type`` ("pt", the default: torch tensors;
"np": the same arrays as numpy float32 in the same (B, T, C, H, W) layout), ``callback_on_step_end`` (diffusers'
signature ``callback(pipe, step_index, sigma, {"latents": x}) -> dict``; a returned "latents" replaces the latents)
and ``return_dict``; results are ``diffusers.utils.BaseOutput`` dataclasses. ``window`` / ``overlap`` arguments of
every pipeline count VIDEO frames (converted to latent frames for the codec, :func:`~.windows.fit_windows`).

Folders (:mod:`neural_render.pipelines.folder`): ``save_pretrained`` writes a folder that
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` loads, and ``from_pretrained`` /
:func:`load_pipeline` load it (and folders of the earlier format) without diffusers' loader. A missing or malformed
folder raises NeuralRenderError naming it.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from torch import Tensor

# component modules: diffusers' loader resolves a component's [library, class] from sys.modules
import neural_render.models.backbone  # noqa: F401
import neural_render.models.codec  # noqa: F401
import neural_render.models.denoiser  # noqa: F401
import neural_render.models.lora  # noqa: F401
import neural_render.models.pass_embedding  # noqa: F401
from neural_render.errors import NeuralRenderError
from neural_render.pipelines import folder as folder_format
from neural_render.pipelines.folder import MODEL_INDEX  # noqa: F401 - re-exported

OUTPUT_TYPES = ("pt", "np")


@dataclass
class VideoPipelineOutput(BaseOutput):
    """frames: (B,T,3,H,W) decoded video in [-1,1] (None when decode=False or no codec); latents: (B,T',C,h,w)."""

    frames: Tensor | None
    latents: Tensor


def make_generator(generator: torch.Generator | None, seed: int | None, default_seed: int | None = 0):
    """``generator`` if given, else a CPU generator seeded with ``seed`` (the ``seed=`` alias), else with
    ``default_seed`` (None: no generator)."""
    if generator is not None:
        return generator
    seed = default_seed if seed is None else seed
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def check_output_type(output_type: str) -> str:
    if output_type not in OUTPUT_TYPES:
        raise NeuralRenderError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    return output_type


def to_output_type(value, output_type: str):
    """Tensors (also inside GBuffers, lists, tuples, dicts) -> numpy float32 arrays for "np"; unchanged for "pt"."""
    if check_output_type(output_type) == "pt" or value is None:
        return value
    if isinstance(value, Tensor):
        return value.detach().float().cpu().numpy()
    if hasattr(value, "passes") and isinstance(value.passes, dict):  # GBuffer -> {pass: array}
        return {k: to_output_type(v, output_type) for k, v in value.passes.items()}
    if isinstance(value, dict):
        return {k: to_output_type(v, output_type) for k, v in value.items()}
    if isinstance(value, list):
        return [to_output_type(v, output_type) for v in value]
    return value


def step_callback(pipe, callback_on_step_end, tensor_inputs=("latents",)):
    """diffusers' ``callback_on_step_end(pipe, step, sigma, {"latents": x}) -> dict`` as the
    ``callback(step, sigma, x) -> x or None`` of :func:`~neural_render.pipelines.windows.windowed_sample`."""
    if callback_on_step_end is None:
        return None
    bad = [name for name in tensor_inputs if name not in pipe._callback_tensor_inputs]
    if bad:
        raise NeuralRenderError(f"callback_on_step_end_tensor_inputs {bad} are not among "
                                f"{pipe._callback_tensor_inputs}")

    def callback(step: int, sigma: Tensor, latents: Tensor):
        out = callback_on_step_end(pipe, step, sigma, {name: latents for name in tensor_inputs}) or {}
        return out.get("latents")

    return callback


class VideoDiffusionPipeline(DiffusionPipeline):
    """Generate latents with the denoiser's sampler and decode them with the codec.

    backbone: VideoBackbone; denoiser: Denoiser; codec: LatentCodec or None; pass_embedding: ids (B,) -> (B,L,D) or
    None; lora: :class:`~neural_render.models.lora.LoraAdapters` attached to ``backbone`` (diffusers' loader passes a
    folder's lora/ here; a backbone that already carries adapters needs none). Task pipelines subclass this, add
    their settings (``SETTINGS_FILE``, ``configure``) and their own ``__call__``.
    """

    _optional_components = ["codec", "pass_embedding", "lora"]
    _callback_tensor_inputs = ["latents"]
    #: settings file of the task pipeline (None: none), whether a folder must have it, the keys ``configure`` takes
    SETTINGS_FILE: str | None = None
    SETTINGS_REQUIRED = False
    SETTINGS_KEYS: frozenset[str] = frozenset()
    #: what a folder of this class is called in messages
    WHAT = "a pipeline"
    #: files of an existing pipeline folder that a new export keeps: the log of how often the test split was
    #: scored with this model name (evaluation/common.py) must survive retraining into the same folder
    KEPT_ON_EXPORT = ("test_scorings.jsonl",)

    def __init__(self, backbone, denoiser, codec=None, pass_embedding=None, lora=None):
        super().__init__()
        if lora is not None:
            lora.attach(backbone)
        self.register_modules(backbone=backbone, denoiser=denoiser, codec=codec, pass_embedding=pass_embedding,
                              lora=None)
        self.run_config: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def modules_to_move(self) -> list:
        """The torch modules of the pipeline (moved by :meth:`to`, switched by :meth:`eval`)."""
        return [m for m in (getattr(self, n, None) for n in self.component_names()) if isinstance(m, torch.nn.Module)]

    def to(self, device) -> VideoDiffusionPipeline:
        for module in self.modules_to_move():
            module.to(device)
        return self

    def eval(self) -> VideoDiffusionPipeline:
        for module in self.modules_to_move():
            module.eval()
        return self

    def component_names(self) -> list[str]:
        """Names of the registered components (diffusers' [library, class] config entries), in order."""
        return [k for k, v in self.config.items() if not k.startswith("_") and isinstance(v, (list, tuple))]

    def lora_names(self) -> list[str]:
        if not isinstance(getattr(self.backbone, "model", None), torch.nn.Module):
            return []
        from neural_render.models.lora import lora_adapter_names

        return lora_adapter_names(self.backbone)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B,T,3,H,W) in [-1,1] -> latents (identity without a codec)."""
        return video if self.codec is None else self.codec.encode(video.to(self.device))

    @torch.no_grad()
    def __call__(self, cond_video: Tensor | None = None, pass_ids: Tensor | list[int] | None = None,
                 latent_shape: tuple[int, ...] | None = None, num_steps: int = 25, guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None, clean: tuple[Tensor, Tensor] | None = None,
                 callback=None, decode: bool = True, seed: int | None = None, output_type: str = "pt",
                 callback_on_step_end=None, return_dict: bool = True):
        """Sample a video.

        cond_video: (B,T,3,H,W) in [-1,1] encoded to the condition latents (channel count must equal the backbone's
        cond_channels). pass_ids: (B,) ids for the pass embedding -> context. latent_shape: (B,T',C,h,w), default from
        the condition latents. clean / callback (step, x) -> x or None: see :meth:`Denoiser.sample`;
        callback_on_step_end: module doc. generator (or ``seed``; neither: unseeded). Returns
        :class:`VideoPipelineOutput` (a tuple without ``return_dict``).
        """
        check_output_type(output_type)
        generator = make_generator(generator, seed, None)
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
        step_end = step_callback(self, callback_on_step_end)
        sigmas = self.denoiser.sampling_sigmas(num_steps)

        def each_step(i: int, x: Tensor):
            replaced = callback(i, x) if callback is not None else None
            if step_end is not None:
                replaced = step_end(i, sigmas[i + 1], x if replaced is None else replaced) or replaced
            return replaced

        latents = self.denoiser.sample(self.backbone, tuple(latent_shape), cond, context, num_steps=num_steps,
                                       generator=generator, guidance_scale=guidance_scale, clean=clean,
                                       callback=each_step if (callback or step_end) else None, device=self.device)
        frames = self.codec.decode(latents) if decode and self.codec is not None else None
        out = VideoPipelineOutput(frames=to_output_type(frames, output_type), latents=to_output_type(latents,
                                                                                                     output_type))
        return out if return_dict else out.to_tuple()

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

    def settings(self) -> dict | None:
        """The settings file's content (None: the pipeline has none); task pipelines override."""
        return None

    def apply_settings(self, settings: dict, source: Path) -> None:
        """Configure from a folder's settings file (keys outside ``SETTINGS_KEYS`` are ignored)."""
        if self.SETTINGS_KEYS:
            self.configure(**{k: v for k, v in settings.items() if k in self.SETTINGS_KEYS}, source=source)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Write the pipeline folder (:mod:`neural_render.pipelines.folder`) atomically, keeping the files of
        ``KEPT_ON_EXPORT`` of an existing folder."""
        import shutil

        from neural_render.io.atomic import atomic_dir, atomic_path

        settings = self.settings()
        index = folder_format.index_of(self, self.SETTINGS_FILE if settings is not None else None)
        with atomic_dir(save_directory) as tmp:
            root = Path(tmp)
            for name in self.KEPT_ON_EXPORT:
                old = Path(save_directory) / name
                if old.is_file() and not (root / name).exists():
                    shutil.copy2(old, root / name)
            for name in self.component_names():
                module = getattr(self, name, None)
                if name == "lora":
                    from neural_render.models.lora import save_lora

                    for adapter in self.lora_names():
                        save_lora(self.backbone, root / "lora" / adapter, adapter_name=adapter)
                elif module is not None:
                    if not hasattr(module, "save_pretrained"):
                        raise NeuralRenderError(f"{name} {type(module).__name__} has no save_pretrained")
                    module.save_pretrained(root / name)
            if settings is not None:
                (root / self.SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
            if self.run_config:
                (root / "run_config.yaml").write_text(self.run_config)
            (root / f"{folder_format.SHIM}.py").write_text(folder_format.shim_source(index))
            with atomic_path(root / MODEL_INDEX) as t, open(t, "w") as f:
                json.dump(index, f, indent=2)

    @classmethod
    def accepts_folder_of(cls, folder_cls: type) -> bool:
        """Whether ``cls.from_pretrained`` builds a ``cls`` from a folder saved by ``folder_cls``."""
        return issubclass(folder_cls, cls)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, device: str | torch.device | None = None,
                        **kwargs):
        """Load a pipeline folder (either format; module doc) as ``cls`` (on the base class: as the class the folder
        records). kwargs: diffusers' loading options are refused except harmless ones (local_files_only,
        trust_remote_code). Any malformed folder -> NeuralRenderError naming it (never another type)."""
        bad = sorted(set(kwargs) - {"local_files_only", "trust_remote_code"})
        if bad:
            raise NeuralRenderError(f"{cls.__name__}.from_pretrained takes device=, not {bad}")
        root = Path(pretrained_model_name_or_path)
        if not root.is_dir():
            raise NeuralRenderError("model folder does not exist", root)
        try:
            return cls._load(root, device)
        except NeuralRenderError:
            raise
        except Exception as err:  # noqa: BLE001 - boundary: a broken folder must not escape as another type
            raise NeuralRenderError(f"not a valid pipeline folder: {type(err).__name__}: {err}", root) from None

    @classmethod
    def _load(cls, root: Path, device):
        index = folder_format.read_index(root)
        path = folder_format.pipeline_class_path(index)
        folder_cls = folder_format.import_class(path, root / MODEL_INDEX) if path else VideoDiffusionPipeline
        if not (isinstance(folder_cls, type) and issubclass(folder_cls, VideoDiffusionPipeline)):
            raise NeuralRenderError(f"{path} is not a pipeline class", root / MODEL_INDEX)
        if cls is VideoDiffusionPipeline:
            build = folder_cls
        elif cls.accepts_folder_of(folder_cls):
            build = cls
        else:
            raise NeuralRenderError(f"folder holds a {folder_cls.__name__}, not {cls.WHAT}", root)
        accepted = set(inspect.signature(build.__init__).parameters) - {"self"}
        pipe = build(**folder_format.load_components(index, root, accepted))
        pipe.read_folder(root)
        if device is not None:
            pipe.to(device)
        return pipe

    def read_folder(self, root: str | os.PathLike) -> VideoDiffusionPipeline:
        """Configure from ``root``'s settings file and run_config.yaml (after the components were loaded), eval mode."""
        root = Path(root)
        path = root / self.SETTINGS_FILE if self.SETTINGS_FILE else None
        if path is not None and (self.SETTINGS_REQUIRED or path.is_file()):
            try:
                settings = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise NeuralRenderError(f"not {self.WHAT} folder: cannot read {path.name}: {err}", path) from None
            if not isinstance(settings, dict):
                raise NeuralRenderError("not a JSON object", path)
            self.apply_settings(settings, root)
        run_config = root / "run_config.yaml"
        self.run_config = run_config.read_text() if run_config.is_file() else None
        return self.eval()

    def register_to_config(self, **kwargs):
        """diffusers' config registration. diffusers' ``DiffusionPipeline.from_pretrained`` builds the pipeline from its
        components, then records the folder with ``register_to_config(_name_or_path=folder)``: that is when the
        folder's settings file and run_config.yaml are read (:meth:`read_folder`), so a pipeline loaded by diffusers is
        configured like one loaded by :meth:`from_pretrained`."""
        super().register_to_config(**kwargs)
        folder = kwargs.get("_name_or_path")
        if folder is not None and "backbone" in self.__dict__ and Path(str(folder)).is_dir():
            self.read_folder(folder)


def export(system, directory: str | os.PathLike, use_ema: bool = True) -> None:
    """Write a trained DiffusionSystem as a pipeline folder (EMA weights when ``use_ema`` and the system has EMA)."""
    import contextlib

    pipe = system.pipeline()
    pipe.run_config = getattr(system, "run_config", None)
    ctx = system.ema_weights() if use_ema else contextlib.nullcontext()
    with ctx:
        pipe.save_pretrained(directory)


def load_pipeline(directory: str | os.PathLike, device: str | torch.device | None = None) -> VideoDiffusionPipeline:
    """Load any pipeline folder (either format) as the pipeline class recorded in it, with its settings."""
    return VideoDiffusionPipeline.from_pretrained(directory, device=device)


def upgrade_folder(directory: str | os.PathLike) -> bool:
    """Rewrite a format-1 folder's model_index.json as format 2 and add the loader shim, so diffusers can load it;
    nothing else changes (format 2 reads the component folders of format 1 as they are). Returns False when the
    folder is format 2 already."""
    from neural_render.io.atomic import atomic_path

    root = Path(directory)
    if folder_format.format_version(folder_format.read_index(root)) == folder_format.FORMAT_VERSION:
        return False
    pipe = load_pipeline(root)
    has_settings = bool(pipe.SETTINGS_FILE) and (root / pipe.SETTINGS_FILE).is_file()
    index = folder_format.index_of(pipe, pipe.SETTINGS_FILE if has_settings else None)
    with atomic_path(root / f"{folder_format.SHIM}.py") as tmp:
        Path(tmp).write_text(folder_format.shim_source(index))
    with atomic_path(root / MODEL_INDEX) as tmp:
        Path(tmp).write_text(json.dumps(index, indent=2))
    return True
