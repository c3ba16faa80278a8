"""Inference pipelines: diffusers ``DiffusionPipeline`` subclasses, their folders, output dataclasses, windowing.

``base``: :class:`~neural_render.pipelines.base.VideoDiffusionPipeline` (the diffusers conventions every pipeline
follows), :func:`~neural_render.pipelines.base.export` and :func:`~neural_render.pipelines.base.load_pipeline`;
``folder``: the folder format (diffusers-readable model_index.json). Import submodules directly (they pull in
torch/diffusers).
"""
