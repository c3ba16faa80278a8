"""Synthetic data engine: seeded procedural PBR scenes -> Mitsuba 3 path-traced RGB + exact G-buffers + flow.

Modules (import them directly; Mitsuba is imported lazily inside functions):
shapes (procedural meshes, user mesh files), materials (random PBR materials, procedural textures), sky (procedural
HDR sky), cameras (trajectories), motion (rigid object motion, spawning), scene (seeded scene generation),
mitsuba_scene (scene -> Mitsuba scene dict per frame), render (path tracing + G-buffers + flow of a clip),
flow (ground-truth forward optical flow), dataset (atomic, resumable clip writer), run (dataset driver + timing).
"""
