"""neural_render: inverse and forward neural rendering of video on one video-diffusion backbone.

Importing the package is cheap: torch, mitsuba, diffusers and lightning are imported lazily by the
modules that need them, so ``import neural_render`` and ``neural-render --help`` stay fast.
"""

from neural_render.errors import NeuralRenderError

__version__ = "0.1.0"
__all__ = ["NeuralRenderError", "__version__"]
