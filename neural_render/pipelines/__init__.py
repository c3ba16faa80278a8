"""Inference pipelines: save_pretrained / from_pretrained folders, output dataclasses, windowing.

``base``: :class:`~neural_render.pipelines.base.VideoDiffusionPipeline`, :func:`~neural_render.pipelines.base.export`
and :func:`~neural_render.pipelines.base.load_pipeline`. Import submodules directly (they pull in torch/diffusers).
"""
