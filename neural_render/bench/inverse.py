"""``neural-render bench inverse``: joint vs per-pass inverse rendering, and peak memory vs video length.

Measured in one run and printed:

1. Speed: ONE joint run (all passes stacked in channels) vs FIVE per-pass runs (one per pass, same condition), at
   the same number of denoising steps, same video, same window settings. Wall time is the median of ``--repeats``
   interleaved calls after a warm-up; ratio = per-pass time / joint time (goal >= 3x). Models: ``--model`` (per-pass)
   and ``--joint-model`` when given, else tiny UNTRAINED pipelines built in code with the same backbone architecture
   (tiny Wan, pixel-unshuffle codec) except for the latent channel count (12 vs 60): speed only, no metrics.
2. Metric difference (only when both trained models and ``--data`` clip folders with ground truth are given):
   normal mean angular error, albedo scale-invariant PSNR, roughness / metallic RMSE, depth scale-and-shift-invariant
   AbsRel (neural_render.metrics), per-pass vs joint and their difference.
3. Peak memory of a windowed call for ``--memory-frames`` (default 16 and 128 frames): each setting runs in a FRESH
   subprocess; after loading the model and building the input video, the kernel's resident-set high-water mark is
   reset (``/proc/self/clear_refs`` = 5), the pipeline runs with streamed output (:meth:`stream`, chunks discarded),
   and the working memory is VmHWM - VmRSS(before). The latents themselves (condition, sampled latents, finished
   latents of every pass) necessarily grow with length; they are computed exactly and printed beside the peak, and
   the ratio is also given with them subtracted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HELP = "inverse rendering: joint vs 5 per-pass runs (speed, metrics) and peak memory 16 vs 128 frames (windowed)"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="trained per-pass pipeline folder (default: tiny untrained)")
    parser.add_argument("--joint-model", default=None, help="trained joint pipeline folder (default: tiny untrained)")
    parser.add_argument("--data", default=None, help="clip folders with ground truth for the metric comparison")
    parser.add_argument("--frames", type=int, default=16, help="frames of the speed-test video (default 16)")
    parser.add_argument("--size", type=int, default=32, help="speed/memory video size in pixels (default 32)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps for both modes (default 4)")
    parser.add_argument("--window", type=int, default=16, help="frames per temporal window (default 16)")
    parser.add_argument("--overlap", type=int, default=4, help="frames shared by neighbouring windows (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per mode (default 3)")
    parser.add_argument("--memory-frames", type=int, nargs="*", default=[16, 128],
                        help="video lengths for the memory test (default 16 128; none to skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def build_tiny_pipeline(mode: str = "per_pass", kind: str = "flow", seed: int = 0, factor: int = 2,
                        passes=None):
    """Tiny UNTRAINED inverse pipeline (tiny Wan, pixel-unshuffle codec) for tests and benchmarks."""
    import torch

    from neural_render.models.codec import PixelUnshuffleCodec
    from neural_render.models.denoiser import Denoiser
    from neural_render.models.pass_embedding import PassEmbedding
    from neural_render.pipelines.inverse import InverseRenderingPipeline
    from neural_render.tasks.base import make_backbone
    from neural_render.types.gbuffer import PREDICTED_PASSES

    passes = list(passes or PREDICTED_PASSES)
    c = 3 * factor * factor
    channels = c if mode == "per_pass" else c * len(passes)
    backbone = make_backbone("wan", config={"in_channels": channels, "out_channels": channels,
                                            "patch_size": (1, 1, 1)}, tiny=True, cond_channels=c, seed=seed)
    embedding = None
    if mode == "per_pass":
        embedding = PassEmbedding(names=passes, dim=backbone.context_dim)
        embedding.reset_parameters(torch.Generator().manual_seed(seed))
    pipe = InverseRenderingPipeline(backbone, Denoiser(kind), PixelUnshuffleCodec(factor), embedding, mode=mode,
                                    passes=passes, info={"global_step": 0})
    return pipe.eval()


def _load(spec: str | None, mode: str):
    if spec is None:
        return build_tiny_pipeline(mode)
    from neural_render import hub

    pipe = hub.load_inverse(spec)
    if pipe.mode != mode:
        from neural_render.errors import NeuralRenderError

        raise NeuralRenderError(f"expected a {mode} model, this one is {pipe.mode}", spec)
    return pipe


def _video(frames: int, size: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, 3, size, size, generator=g)


def _timed(pipe, video, args) -> float:
    start = time.perf_counter()
    pipe(video, num_steps=args.steps, window=args.window, overlap=args.overlap, progress=False)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------- memory
def _proc_status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def memory_probe(spec: str | None, mode: str, frames: int, size: int, steps: int, window: int, overlap: int,
                 threads: int = 1) -> dict:
    """Run in a fresh process: peak working memory (bytes) of one streamed windowed call (module doc)."""
    import gc

    import torch

    torch.set_num_threads(threads)
    pipe = _load(spec, mode)
    warm = _video(min(frames, 2), size, 1)
    for _ in pipe.stream(warm, num_steps=1, window=window, overlap=overlap, progress=False):
        pass
    video = _video(frames, size)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status()["VmRSS"]
    chunks = 0
    start = time.perf_counter()
    for _start, _stop, _chunk in pipe.stream(video, num_steps=steps, window=window, overlap=overlap, progress=False):
        chunks += 1
    seconds = time.perf_counter() - start
    peak = _proc_status()["VmHWM"]
    plan = pipe._plan(video, None, None, window, overlap, True)
    c, (h, w) = int(pipe.codec.latent_channels), plan.latent_hw
    # condition + the latent being sampled + (per-pass) the finished latents of the other passes, float32
    blocks = 1 + (len(plan.run_passes) + 1 if mode == "per_pass" else len(pipe.passes))
    per_frame = 4 * c * h * w * blocks
    return {"frames": frames, "working": peak - before, "process_peak": peak, "latent_bytes": per_frame * frames,
            "chunks": chunks, "seconds": seconds}


def probe_in_subprocess(function: str, payload: list, threads: int = 1) -> dict:
    """``neural_render.bench.<function>(*payload)`` in a fresh Python process; its JSON result."""
    module, _, name = function.rpartition(".")
    code = (f"import json, sys; from neural_render.bench.{module} import {name}; "
            f"print('RESULT ' + json.dumps({name}(*json.loads(sys.argv[1]))))")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(payload)], capture_output=True, text=True, env=env,
                          check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        from neural_render.errors import NeuralRenderError

        raise NeuralRenderError(f"memory probe failed: {done.stderr.strip()[-800:]}")
    return json.loads(lines[-1][7:])


def _memory(args, spec, mode) -> list[dict]:
    results = []
    for frames in args.memory_frames:
        payload = [spec, mode, frames, args.size, args.steps, args.window, args.overlap, args.threads]
        results.append(probe_in_subprocess("inverse.memory_probe", payload, args.threads))
    return results


# ---------------------------------------------------------------------------------------------------- metrics
def _metrics(pipe, clips, args) -> dict[str, float]:
    import math

    from neural_render.io import read_clip
    from neural_render.metrics import (
        albedo_si_psnr,
        depth_absrel_ssi,
        masked_rmse,
        normal_error_stats,
    )

    sums: dict[str, list[float]] = {}
    for clip_dir in clips:
        clip = read_clip(clip_dir)
        gt = clip.gbuffer
        out = pipe(clip.rgb, num_steps=args.steps, window=args.window, overlap=args.overlap, progress=False).gbuffer
        mask = gt.mask
        values = {"normal mean angle (deg)": normal_error_stats(out.normal, gt.normal, mask)["mean"],
                  "albedo si-PSNR (dB)": float(albedo_si_psnr(out.basecolor, gt.basecolor, mask).mean()),
                  "roughness RMSE": float(masked_rmse(out.roughness, gt.roughness, mask).mean()),
                  "metallic RMSE": float(masked_rmse(out.metallic, gt.metallic, mask).mean()),
                  "depth AbsRel (ssi)": float(depth_absrel_ssi(out.depth, gt.depth, mask).mean())}
        for k, v in values.items():
            if not math.isnan(v):
                sums.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def measure(args) -> dict:
    """Every number of the benchmark (speed, optional metrics, memory) as a dict; :func:`run` prints it."""
    import torch

    from neural_render.errors import NeuralRenderError

    if min(args.frames, args.size, args.steps, args.repeats, args.threads) < 1:
        raise NeuralRenderError("--frames, --size, --steps, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    per_pass, joint = _load(args.model, "per_pass"), _load(args.joint_model, "joint")
    trained = per_pass.is_trained and joint.is_trained
    video = _video(args.frames, args.size)
    _timed(per_pass, video[:, :2], args), _timed(joint, video[:, :2], args)  # warm-up
    times = {"per_pass": [], "joint": []}
    for _ in range(args.repeats):  # interleaved, so machine load hits both alike
        times["per_pass"].append(_timed(per_pass, video, args))
        times["joint"].append(_timed(joint, video, args))
    t_pp, t_joint = statistics.median(times["per_pass"]), statistics.median(times["joint"])
    result = {"trained": trained, "frames": args.frames, "size": args.size, "steps": args.steps,
              "window": args.window, "overlap": args.overlap, "threads": args.threads, "repeats": args.repeats,
              "denoisers": [per_pass.denoiser.kind, joint.denoiser.kind], "per_pass_seconds": t_pp,
              "joint_seconds": t_joint, "speed_ratio": t_pp / t_joint, "metrics": None, "memory": []}
    if args.data and trained:
        from neural_render.data.clip_dataset import find_clips

        clips = find_clips(args.data)
        result["metrics"] = {"clips": len(clips), "per_pass": _metrics(per_pass, clips, args),
                             "joint": _metrics(joint, clips, args)}
    if args.memory_frames:
        results = _memory(args, args.model, "per_pass")
        result["memory"] = results
        if len(results) >= 2:
            a, b = results[0], results[-1]
            result["memory_ratios"] = {
                "frames": [a["frames"], b["frames"]],
                "working": b["working"] / max(a["working"], 1),
                "without_latents": (b["working"] - b["latent_bytes"]) / max(a["working"] - a["latent_bytes"], 1),
                "process_peak": b["process_peak"] / max(a["process_peak"], 1)}
    return result


def run(args) -> int:
    r = measure(args)
    label = "trained models" if r["trained"] else "UNTRAINED tiny pipelines (random weights: speed/memory only)"
    print(f"bench inverse: {label}; video {args.frames} frames {args.size}x{args.size}, {args.steps} steps, window "
          f"{args.window}/{args.overlap}, {args.threads} thread(s), denoisers {r['denoisers'][0]}/{r['denoisers'][1]}")
    t_pp, t_joint = r["per_pass_seconds"], r["joint_seconds"]
    print(f"  5 per-pass runs: {t_pp:.3f} s   joint run: {t_joint:.3f} s   speed ratio {t_pp / t_joint:.2f}x "
          f"(goal >= 3x: {'met' if t_pp / t_joint >= 3 else 'NOT met'})")
    if r["metrics"] is not None:
        m_pp, m_joint = r["metrics"]["per_pass"], r["metrics"]["joint"]
        print(f"  metrics on {r['metrics']['clips']} clips ({args.data}):")
        print(f"    {'metric':<26}{'per-pass':>10}{'joint':>10}{'joint - per-pass':>18}")
        for key in m_pp:
            print(f"    {key:<26}{m_pp[key]:>10.3f}{m_joint.get(key, float('nan')):>10.3f}"
                  f"{m_joint.get(key, float('nan')) - m_pp[key]:>18.3f}")
    else:
        print("  metrics: skipped (needs --model and --joint-model trained and --data with ground truth)")
    if args.memory_frames:
        results = r["memory"]
        print(f"  peak working memory, per-pass model, {args.size}x{args.size}, streamed output, fresh process per "
              f"length (VmHWM - VmRSS before the call, HWM reset via /proc/self/clear_refs):")
        for m in results:
            print(f"    {m['frames']:>5} frames: {m['working'] / 2**20:8.1f} MiB  (latents "
                  f"{m['latent_bytes'] / 2**20:6.1f} MiB, without them "
                  f"{(m['working'] - m['latent_bytes']) / 2**20:8.1f} MiB; whole process peak "
                  f"{m['process_peak'] / 2**20:.0f} MiB)")
        if len(results) >= 2:
            a, b = results[0], results[-1]
            ratios = r["memory_ratios"]
            total, rest, process = ratios["working"], ratios["without_latents"], ratios["process_peak"]

            def verdict(ratio: float) -> str:
                return "met" if ratio <= 1.1 else "NOT met"

            print(f"    {b['frames']} vs {a['frames']} frames: working memory x{total:.2f} ({verdict(total)}), "
                  f"without the latents x{rest:.2f} ({verdict(rest)}), whole-process peak x{process:.3f} "
                  f"({verdict(process)}); "
                  f"goal: within 10%")
    return 0
