"""Time and peak memory vs number of frames and vs resolution (used by ``neural-render bench all``).

Two workloads:
  * ``inverse``: the windowed inverse pipeline in joint mode (all passes in one run), tiny UNTRAINED config built by
    :func:`neural_render.bench.inverse.build_tiny_pipeline` (random weights: speed and memory only), streamed output.
  * ``shade``: the classical split-sum shader (:func:`neural_render.render.shade.shade`) on the exact G-buffer of a
    sphere seen by an orbiting camera, lit by a shipped env map (the IBL precomputation is done before timing).

Every point runs in a fresh process with the method of ``bench inverse``: after setup and a small warm-up call the
kernel's resident-set high-water mark is reset (``/proc/self/clear_refs`` = 5; glibc ``malloc_trim(0)`` first, so
freed setup memory that the call would reuse is not hidden from the high-water mark), the workload runs once, and the
working memory is VmHWM - VmRSS(before); the wall time of that one call is recorded beside it. The processes are
forked from a multiprocessing *forkserver* that has only imported the modules (torch, diffusers, ...), so each
point starts with a clean heap without paying ~8 s of imports.
"""

from __future__ import annotations

import time

#: Full and --quick settings. "frames" sweeps run at ``frames_size`` px; "sizes" sweeps at ``sizes_frames`` frames.
PLANS = {
    "full": {
        # sizes stop at 128 px: the tiny Wan config's RoPE table (rope_max_seq_len 64) covers 64 latent rows
        "inverse": {"frames": [8, 16, 32, 64, 128], "frames_size": 32, "frames_steps": 4,
                    "sizes": [16, 32, 64, 128], "sizes_frames": 8, "sizes_steps": 4, "window": 16, "overlap": 4},
        "shade": {"frames": [8, 16, 32, 64, 128], "frames_size": 64, "sizes": [32, 64, 128, 256], "sizes_frames": 16},
    },
    "quick": {
        "inverse": {"frames": [2, 4], "frames_size": 16, "frames_steps": 1, "sizes": [16, 32], "sizes_frames": 2,
                    "sizes_steps": 1, "window": 4, "overlap": 1},
        "shade": {"frames": [2, 4], "frames_size": 16, "sizes": [16, 32], "sizes_frames": 2},
    },
}
PRELOAD = ["torch", "diffusers", "neural_render.bench.inverse", "neural_render.bench.sweeps",
           "neural_render.pipelines.inverse", "neural_render.tasks.base", "neural_render.render.shade"]


def _reset_peak() -> int:
    """Reset VmHWM to the current RSS; returns VmRSS (bytes)."""
    import gc

    from neural_render.bench.inverse import _proc_status

    gc.collect()
    try:  # hand freed heap pages back to the kernel, so setup garbage reused by the call is not hidden from VmHWM
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status()["VmRSS"]


def inverse_probe(frames: int, size: int, steps: int, window: int, overlap: int, threads: int = 1) -> dict:
    """One streamed windowed call of the tiny joint pipeline: seconds and working memory (bytes)."""
    import torch

    from neural_render.bench.inverse import _proc_status, _video, build_tiny_pipeline

    torch.set_num_threads(threads)
    pipe = build_tiny_pipeline("joint")
    for _ in pipe.stream(_video(min(frames, 2), min(size, 32), 1), num_steps=1, window=window, overlap=overlap,
                         progress=False):
        pass
    video = _video(frames, size)
    before = _reset_peak()
    start = time.perf_counter()
    for _ in pipe.stream(video, num_steps=steps, window=window, overlap=overlap, progress=False):
        pass
    seconds = time.perf_counter() - start
    peak = _proc_status()["VmHWM"]
    return {"frames": frames, "size": size, "steps": steps, "seconds": seconds, "working": peak - before,
            "process_peak": peak}


def _sphere_scene(frames: int, size: int):
    import math

    import torch

    from neural_render.data_assets import envmap_path
    from neural_render.io import load_envmap
    from neural_render.render.analytic import sphere_gbuffer
    from neural_render.types import Camera
    from neural_render.types.camera import look_at

    angles = torch.linspace(0.0, 2 * math.pi, frames + 1)[:-1]
    eyes = torch.stack([3 * torch.sin(angles), 0.5 * torch.ones_like(angles), 3 * torch.cos(angles)], -1)
    camera = Camera.from_fov(40.0, size, size, look_at(eyes, torch.zeros(3))[None])
    gbuffer = sphere_gbuffer(camera, (0.0, 0.0, 0.0), 1.0, basecolor=(0.9, 0.6, 0.3), roughness=0.3, metallic=0.5)
    return gbuffer, camera, load_envmap(envmap_path("kiara_1_dawn"))


def shade_probe(frames: int, size: int, threads: int = 1) -> dict:
    """One split-sum :func:`shade` call on a sphere G-buffer: seconds and working memory (bytes)."""
    import torch

    from neural_render.bench.inverse import _proc_status
    from neural_render.render.shade import prepare_ibl, shade

    torch.set_num_threads(threads)
    gbuffer, camera, env = _sphere_scene(frames, size)
    ibl = prepare_ibl(env)
    g_warm, c_warm, _ = _sphere_scene(1, 16)
    shade(g_warm, c_warm, ibl)
    before = _reset_peak()
    start = time.perf_counter()
    out = shade(gbuffer, camera, ibl)
    seconds = time.perf_counter() - start
    peak = _proc_status()["VmHWM"]
    del out
    return {"frames": frames, "size": size, "seconds": seconds, "working": peak - before, "process_peak": peak}


class _Runner:
    """Runs probes one at a time, each in a fresh process forked from a preloaded forkserver."""

    def __init__(self, threads: int):
        import multiprocessing

        self.threads = threads
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)

    def __call__(self, fn, *args):
        with self.ctx.Pool(1, maxtasksperchild=1) as pool:
            return pool.apply(fn, (*args, self.threads))


def run_sweeps(quick: bool = False, threads: int = 1, log=print) -> dict:
    """All sweep points: {"inverse": {"settings", "frames": [...], "sizes": [...]}, "shade": {...}}."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the forkserver and its children
    plan = PLANS["quick" if quick else "full"]
    run = _Runner(threads)
    results = {}
    for name, p in plan.items():
        cache: dict[tuple[int, int], dict] = {}

        def point(frames: int, size: int, steps: int | None = None) -> dict:
            key = (frames, size, steps)
            if key not in cache:
                start = time.perf_counter()
                try:
                    if name == "inverse":
                        cache[key] = run(inverse_probe, frames, size, steps, p["window"], p["overlap"])
                    else:
                        cache[key] = run(shade_probe, frames, size)
                except Exception as err:  # noqa: BLE001 - a failing point is reported, the others still run
                    cache[key] = {"frames": frames, "size": size, "steps": steps,
                                  "error": f"{type(err).__name__}: {err}"}
                    log(f"  sweep {name}: {frames} frames {size}x{size}: FAILED {cache[key]['error']}")
                    return cache[key]
                log(f"  sweep {name}: {frames} frames {size}x{size}: {cache[key]['seconds']:.2f} s, "
                    f"{cache[key]['working'] / 2**20:.1f} MiB ({time.perf_counter() - start:.1f} s with setup)")
            return cache[key]

        steps_f, steps_s = p.get("frames_steps"), p.get("sizes_steps")
        results[name] = {"settings": p,
                         "frames": [point(f, p["frames_size"], steps_f) for f in p["frames"]],
                         "sizes": [point(p["sizes_frames"], s, steps_s) for s in p["sizes"]]}
    return results
