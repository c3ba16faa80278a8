"""Registers DiffusionRenderer folders with :mod:`neural_render.hub` (import this module to do so).

``neural_render.hub`` imports the modules of its ``LOADER_MODULES`` before loading a foreign folder; with this
module listed there, a folder whose model_index.json names ``RGBXVideoDiffusionPipeline`` loads as kind "inverse"
or "forward" through :func:`neural_render.pipelines.diffusion_renderer.load_for_command` (a folder of the other
kind is refused naming it), so ``--model DIR`` of inverse / autolabel and of forward / relight / edit take
DiffusionRenderer checkpoints.
"""

from __future__ import annotations

from neural_render import hub


def _loader(kind: str):
    def load(folder, device=None):
        from neural_render.pipelines.diffusion_renderer import load_for_command

        return load_for_command(folder, kind, device=device)

    load.__name__ = f"load_diffusion_renderer_{kind}"
    return load


for _kind in ("inverse", "forward"):
    hub.register_loader(hub.DIFFUSION_RENDERER_CLASS, _kind, _loader(_kind))
