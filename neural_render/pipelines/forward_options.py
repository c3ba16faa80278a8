"""Keyword arguments of a forward pipeline's call from a command's ``--steps`` / ``--size`` (shared by
``neural-render forward`` (pipelines/forward_clip.py) and ``relight`` / ``edit`` (pipelines/relight.py); no model
loading here, so pipelines/relight.py can use it without importing the hub)."""

from __future__ import annotations


def takes_processing_size(pipe) -> bool:
    """Whether a forward pipeline's call takes ``processing_size`` (DiffusionRenderer's does; the toolkit's
    ForwardPipeline renders at the input size)."""
    import inspect

    try:
        return "processing_size" in inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return False


def forward_options(pipe, num_steps: int | None = None, processing_size=None, strict: bool = False,
                    source=None) -> dict:
    """Keyword arguments of a forward pipeline's call from a command's ``--steps`` / ``--size``.

    num_steps: passed only when given (None: the model's own default: 1 for the toolkit's x0 models, 20 Euler steps
    for DiffusionRenderer); processing_size (None | N longer side | (h, w)): passed to pipelines that take one
    (:func:`takes_processing_size`); for one that renders at the input size a size is a NeuralRenderError naming
    ``source`` when ``strict`` (``forward --size``), else left out (``relight`` / ``edit``: the size is then the
    inverse step's only, as before)."""
    from neural_render.errors import NeuralRenderError

    options = {} if num_steps is None else {"num_steps": int(num_steps)}
    if processing_size is not None:
        if takes_processing_size(pipe):
            options["processing_size"] = processing_size
        elif strict:
            raise NeuralRenderError("--size: this forward model renders at the input size (it takes no processing "
                                    "size)", source)
    return options
