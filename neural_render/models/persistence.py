"""The one save_pretrained / from_pretrained of the project's own diffusers-style models (local folders only).

:class:`LocalModelMixin` is diffusers' ``ModelMixin`` + ``ConfigMixin`` (config.json + safetensors) with the project's
rules at the folder boundary: folders are written atomically (temporary name, then renamed into place), models load
from a LOCAL folder only (never the hub), and any failure to load raises :class:`NeuralRenderError` naming the
folder. :class:`~neural_render.models.pass_embedding.PassEmbedding`,
:class:`~neural_render.models.domain_shifter.DomainShifters` and
:class:`~neural_render.models.cache_injection.CacheInjection` use it.

diffusers' pipeline loader (``DiffusionPipeline.from_pretrained``) finds a component's load method by looking up
the names ``ModelMixin`` / ``SchedulerMixin`` / ... in the component's own module and checking the class is a
subclass: every module whose class is a pipeline component therefore imports the diffusers base class by that name
(``tests/pipelines/test_diffusers_pipelines.py`` loads every shipped folder through diffusers).

:func:`init_args` reads the constructor arguments of a weight-free object back from its attributes (the stored
config of weight-free codecs).
"""

from __future__ import annotations

import inspect
import json
import os

from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

from neural_render.errors import NeuralRenderError


class LocalModelMixin(ModelMixin, ConfigMixin):
    """diffusers ModelMixin + ConfigMixin saved atomically and loaded from local folders only (module doc)."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """config.json + diffusion_pytorch_model.safetensors into ``save_directory``, written atomically."""
        from neural_render.io.atomic import atomic_dir

        kwargs.setdefault("safe_serialization", True)
        with atomic_dir(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a LOCAL folder (config.json + safetensors); diffusers' loading options (torch_dtype, ...) pass
        through. A missing or bad folder raises NeuralRenderError naming it."""
        path = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
            raise NeuralRenderError(f"not a {cls.__name__} folder (no config.json)", path)
        kwargs["local_files_only"] = True
        try:
            return super().from_pretrained(path, **kwargs)
        except Exception as err:  # noqa: BLE001 - boundary: any library error becomes NeuralRenderError
            raise NeuralRenderError(f"cannot load {cls.__name__}: {type(err).__name__}: {err}", path) from None


def init_args(obj) -> dict:
    """Constructor arguments of a weight-free object, read back from same-named attributes (JSON values only).

    Raises NeuralRenderError when a required argument has no attribute or a value is not JSON."""
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
