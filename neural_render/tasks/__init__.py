"""Training tasks: LightningModules built on :class:`neural_render.tasks.base.DiffusionSystem`.

``base`` (the core every task subclasses), ``toy`` (a tiny video-to-video mapping that proves the loop learns);
inverse / forward / sim2real live beside them. Import submodules directly (they pull in lightning).
"""
