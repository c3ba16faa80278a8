"""Loader shim written by neural_render (no code of this model): diffusers' DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True) takes the pipeline class from here and the components named in model_index.json
from sys.modules, so this imports them from the installed neural_render package."""

import neural_render.models.backbone.svd  # noqa: F401
import neural_render.models.codec  # noqa: F401
import neural_render.models.denoiser  # noqa: F401
import neural_render.models.domain_shifter  # noqa: F401
from neural_render.pipelines.forward import ForwardPipeline  # noqa: F401
