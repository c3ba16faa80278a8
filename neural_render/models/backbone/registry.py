"""Registry of backbone adapter classes by ``kind``, filled by the classes themselves.

Every :class:`~neural_render.models.backbone.base.VideoBackbone` subclass with its own ``kind`` registers itself
when its class is created (``VideoBackbone.__init_subclass__``); the package ``neural_render.models.backbone`` imports
the SVD and Wan adapters, so importing anything from it registers them. :mod:`~neural_render.models.backbone.loading`
looks classes up here, so it never imports the adapter modules (no import cycle).
"""

from __future__ import annotations

from neural_render.errors import NeuralRenderError

_CLASSES: dict[str, type] = {}


def register_backbone(cls: type) -> type:
    """Register ``cls`` under ``cls.kind`` (a non-empty string); a second class for the same kind is refused."""
    kind = getattr(cls, "kind", "")
    if not isinstance(kind, str) or not kind:
        raise NeuralRenderError(f"backbone class {cls.__name__} needs a non-empty kind")
    known = _CLASSES.get(kind)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise NeuralRenderError(f"backbone kind {kind!r} is already registered by {known.__module__}.{known.__name__}")
    _CLASSES[kind] = cls
    return cls


def backbone_class(kind: str) -> type:
    """The adapter class of ``kind`` (NeuralRenderError naming the known kinds otherwise)."""
    if kind not in _CLASSES:
        raise NeuralRenderError(f"unknown backbone kind {kind!r}; use one of {backbone_kinds()}")
    return _CLASSES[kind]


def backbone_kinds() -> list[str]:
    """Registered kinds, sorted."""
    return sorted(_CLASSES)
