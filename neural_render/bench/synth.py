"""``neural-render bench synth``: synthetic data engine throughput, measured in one run.

Renders ``--clips`` clips of ``--frames`` frames at ``--size`` and ``--spp`` into a temporary folder with the
real writer (synth/run.py: scene generation, Mitsuba path tracing, G-buffer ray casts, flow, EXR writing) and
prints frames/s and the ratio total time / raw Mitsuba render time of the same frames (scene load + mi.render,
timed inside the same run; goal <= 1.2) and the stricter total / ``mi.render`` alone. A warm-up clip (different
folder, not counted) first fills Dr.Jit's kernel cache so one-off JIT compilation does not flatter the ratio.
"""

from __future__ import annotations

import json

HELP = "synthetic data engine: frames/s at 128x128 / 64 spp and total-vs-raw-Mitsuba time ratio"


def add_arguments(parser) -> None:
    parser.add_argument("--clips", type=int, default=2, help="clips to render (default 2)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--size", default="128x128", help="WxH in pixels (default 128x128)")
    parser.add_argument("--spp", type=int, default=64, help="samples per pixel (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--sky", action="store_true", help="procedural sky instead of the shipped train env maps")
    parser.add_argument("--no-warmup", action="store_true", help="time the first render too (JIT compile included)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def measure(clips: int = 2, frames: int = 8, width: int = 128, height: int = 128, spp: int = 64, seed: int = 0,
            sky: bool = False, warmup: bool = True) -> dict:
    """Run the writer into a temporary folder; returns the measured numbers (see module doc)."""
    import tempfile

    from neural_render.synth.dataset import SynthJob
    from neural_render.synth.envmap_files import resolve_envmaps
    from neural_render.synth.run import run_synth
    from neural_render.synth.scene import SynthConfig

    config = SynthConfig(width=width, height=height, num_frames=frames, spp=spp, sky=sky)
    envmaps = [] if sky else resolve_envmaps("train")
    with tempfile.TemporaryDirectory(prefix="nr-bench-synth-") as tmp:
        if warmup:
            warm = SynthConfig(width=width, height=height, num_frames=2, spp=spp, sky=sky)
            run_synth(SynthJob(f"{tmp}/warmup", warm, seed + 1000, envmaps), 1, progress=False)
        report = run_synth(SynthJob(f"{tmp}/data", config, seed, envmaps), clips, progress=False)
    return {"clips": clips, "frames": report.frames_rendered, "size": f"{width}x{height}", "spp": spp,
            "variant": report.variant, "total_seconds": report.total_seconds,
            "raw_render_seconds": report.render_seconds, "path_trace_seconds": report.path_trace_seconds,
            "ratio_total_over_raw": report.ratio, "ratio_total_over_path_trace": report.ratio_path_trace,
            "frames_per_second": report.frames_per_second,
            "goal_ratio": 1.2, "summary": report.summary()}


def run(args) -> int:
    from neural_render.synth.frame_size import parse_size

    width, height = parse_size(args.size)
    result = measure(args.clips, args.frames, width, height, args.spp, args.seed, args.sky, not args.no_warmup)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "summary"}))
    else:
        print(f"bench synth: {result['clips']} clips x {args.frames} frames at {result['size']}, {result['spp']} spp, "
              f"variant {result['variant']}")
        print(result["summary"])
        verdict = "meets" if result["ratio_total_over_raw"] <= 1.2 else "misses"
        print(f"  -> {verdict} the 1.2 goal (ratio {result['ratio_total_over_raw']:.3f})")
    return 0
