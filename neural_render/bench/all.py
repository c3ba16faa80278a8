"""``neural-render bench all``: every registered benchmark in one process, plus time/memory sweeps, as a report.

Runs backbone, synth, inverse and gpu-estimate (their ``measure`` functions, settings in :data:`SETTINGS`), then the
sweeps of :mod:`neural_render.bench.sweeps` (time and peak memory vs frames and vs resolution for the windowed
inverse pipeline and the split-sum shader), and writes, each file atomically:
  DIR/bench.md     a Markdown table per benchmark, with the machine (CPUs, torch, date, load, total wall time)
  DIR/bench.json   every measured number
  DIR/*.png        time vs frames, memory vs frames, time vs resolution, memory vs resolution
With ``--readme README.md`` the block between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` is replaced by the
tables, and the PNGs are copied to ``docs/bench/`` beside the README (the block links them there).
``--quick`` is a tiny version (< 60 s) for tests; the full run takes ~10 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HELP = "run every benchmark + time/memory sweeps; write bench.md, bench.json, PNG plots (and a README block)"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
PLOTS = {  # file -> (sweep, value, title, x label, y label)
    "time_vs_frames.png": ("frames", "seconds", "time vs frames", "frames", "seconds per call"),
    "memory_vs_frames.png": ("frames", "working", "peak working memory vs frames", "frames", "MiB"),
    "time_vs_resolution.png": ("sizes", "seconds", "time vs resolution", "width = height (px)", "seconds per call"),
    "memory_vs_resolution.png": ("sizes", "working", "peak working memory vs resolution", "width = height (px)", "MiB"),
}
SETTINGS = {
    "full": {"backbone": dict(frames=4, size=32, steps=20, warmup=3, rss=True),
             "synth": dict(clips=2, frames=8, width=128, height=128, spp=64, warmup=True),
             "inverse": [],
             "inverse-e2e": dict(width=512, height=512, frames=24),
             "gpu-estimate": dict(size=512, frames=24, steps=20, mfu=0.4, backbones=["svd", "wan"])},
    "quick": {"backbone": dict(frames=2, size=8, steps=2, warmup=1, rss=False),
              "synth": dict(clips=1, frames=2, width=32, height=32, spp=4, warmup=False),
              "inverse": ["--frames", "4", "--size", "16", "--steps", "1", "--window", "4", "--overlap", "1",
                          "--repeats", "1", "--memory-frames"],
              "inverse-e2e": dict(width=32, height=24, frames=3),
              "gpu-estimate": dict(size=64, frames=2, steps=20, mfu=0.4, backbones=["svd"])},
}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="out/bench",
                        help="output folder (default out/bench): new, empty or an earlier bench all output, whose "
                             "files are replaced; any other non-empty folder is refused (exit 2), untouched")
    parser.add_argument("--quick", action="store_true", help="tiny settings (< 60 s), for tests")
    parser.add_argument("--readme", default=None, help="README.md whose bench:start/end block is replaced")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every benchmark (default 1)")


# ------------------------------------------------------------------------------------------------- measuring
def _module_args(module: str, argv: list[str]):
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"neural_render.bench.{module}").add_arguments(parser)
    return parser.parse_args(argv)


def _run_backbone(s, threads):
    from neural_render.bench.backbone import measure

    return measure("svd", s["frames"], s["size"], 1, 4, s["steps"], s["warmup"], None, rss=s["rss"], threads=threads)


def _run_synth(s, threads):
    from neural_render.bench.synth import measure

    return measure(s["clips"], s["frames"], s["width"], s["height"], s["spp"], 0, False, s["warmup"])


def _run_inverse(s, threads):
    from neural_render.bench.inverse import measure

    return measure(_module_args("inverse", [*s, "--threads", str(threads)]))


def _run_gpu(s, threads):
    from neural_render.bench.gpu_estimate import measure

    return {"rows": measure(s["size"], s["frames"], s["steps"], s["mfu"], s["backbones"]), **s}


def _run_inverse_e2e(s, threads):
    from neural_render.bench.inverse_e2e import measure

    return measure(s["width"], s["height"], s["frames"], threads=threads)


RUNNERS = {"backbone": _run_backbone, "synth": _run_synth, "inverse": _run_inverse, "inverse-e2e": _run_inverse_e2e,
           "gpu-estimate": _run_gpu}


def _machine() -> dict:
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu": model, "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run_all(quick: bool = False, threads: int = 1, log=print) -> dict:
    """Measure everything; the JSON-serialisable result dict (see module doc)."""
    import torch

    from neural_render.bench import BENCHMARKS
    from neural_render.bench.sweeps import run_sweeps

    torch.set_num_threads(threads)
    mode = "quick" if quick else "full"
    start = time.perf_counter()
    result = {"mode": mode, "threads": threads, "machine": _machine(), "load_average_1min": [os.getloadavg()[0]],
              "benchmarks": {}, "errors": {}, "seconds": {}}
    for name in BENCHMARKS:
        if name == "all":
            continue
        if name not in RUNNERS:
            result["errors"][name] = "registered but not known to bench all"
            continue
        log(f"bench all: {name} ...")
        t0 = time.perf_counter()
        try:
            result["benchmarks"][name] = RUNNERS[name](SETTINGS[mode][name], threads)
        except Exception as err:  # noqa: BLE001 - one failing benchmark must not lose the others
            result["errors"][name] = f"{type(err).__name__}: {err}"
            log(f"bench all: {name} FAILED: {result['errors'][name]}")
        result["seconds"][name] = time.perf_counter() - t0
    log("bench all: sweeps ...")
    t0 = time.perf_counter()
    result["sweeps"] = run_sweeps(quick, threads, log)
    for name, sweep in result["sweeps"].items():
        for q in sweep["frames"] + sweep["sizes"]:
            if "error" in q:
                result["errors"][f"sweep {name} {q['frames']} frames {q['size']} px"] = q["error"]
    result["seconds"]["sweeps"] = time.perf_counter() - t0
    result["load_average_1min"].append(os.getloadavg()[0])
    result["total_seconds"] = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------------- Markdown
def _mib(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _backbone_md(r: dict) -> list[str]:
    return [f"Tiny {r['backbone']} adapter, latents {tuple(r['shape'])} + {r['cond_channels']} condition channels, "
            f"{r['parameters']:,} parameters, random weights; median of {r['steps']} AdamW train steps "
            "per side.", ""] + \
        _table(["measure", "value", "goal"], [
            ["adapter step / bare diffusers step", f"{r['overhead_ratio']:.3f} ({r['step_s_adapter'] * 1e3:.1f} ms / "
             f"{r['step_s_bare'] * 1e3:.1f} ms)", "<= 1.05"],
            ["fp32 step / bf16-autocast step", f"{r['bf16_speed_ratio']:.3f} ({r['step_s_fp32'] * 1e3:.1f} ms / "
             f"{r['step_s_bf16'] * 1e3:.1f} ms)", ">= 1.5"],
            ["saved activations MiB, no checkpointing / checkpointing",
             f"{_mib(r['saved_activation_bytes'])} / {_mib(r['saved_activation_bytes_checkpointing'])}", ""],
            ["peak RSS increase per step MiB, no checkpointing / checkpointing",
             f"{_mib(r['peak_rss_increase_bytes'])} / {_mib(r['peak_rss_increase_bytes_checkpointing'])}", ""]])


def _synth_md(r: dict) -> list[str]:
    return [f"{r['clips']} clips x {r['frames'] // max(r['clips'], 1)} frames at {r['size']}, {r['spp']} spp, "
            f"Mitsuba variant {r['variant']}.", ""] + _table(["measure", "value", "goal"], [
                ["frames/s", f"{r['frames_per_second']:.3f}", ""],
                ["total time / raw Mitsuba render (scene load + mi.render)", f"{r['ratio_total_over_raw']:.3f}",
                 f"<= {r['goal_ratio']}"],
                ["total time / mi.render alone", f"{r['ratio_total_over_path_trace']:.3f}", ""]])


def _inverse_md(r: dict) -> list[str]:
    label = "trained models" if r["trained"] else "tiny UNTRAINED pipelines (random weights: speed/memory only)"
    lines = [f"{label}; {r['frames']} frames {r['size']}x{r['size']}, {r['steps']} steps, window "
             f"{r['window']}/{r['overlap']}, median of {r['repeats']}.", ""]
    rows = [["5 per-pass runs / 1 joint run (speed)", f"{r['speed_ratio']:.2f}x ({r['per_pass_seconds']:.3f} s / "
             f"{r['joint_seconds']:.3f} s)", ">= 3x"]]
    for m in r["memory"]:
        rows.append([f"peak working memory, per-pass, {m['frames']} frames (MiB)",
                     f"{_mib(m['working'])} (latents {_mib(m['latent_bytes'])})", ""])
    if "memory_ratios" in r:
        q = r["memory_ratios"]
        rows.append([f"memory {q['frames'][1]} / {q['frames'][0]} frames: working, without latents, process peak",
                     f"x{q['working']:.2f}, x{q['without_latents']:.2f}, x{q['process_peak']:.3f}", "<= 1.1"])
    return lines + _table(["measure", "value", "goal"], rows)


def _inverse_e2e_md(r: dict) -> list[str]:
    from neural_render.bench.inverse_e2e import GOAL

    return [f"`neural-render inverse` of a {r['frames']}-frame {r['video']} H.264 clip (ffmpeg testsrc2) processed at "
            f"{r['processing_size']} by {Path(r['model']).name}, {r['threads']} thread(s): the command in a fresh "
            "process vs the pipeline call alone.", ""] + _table(["measure", "value", "goal"], [
                ["end to end / model", f"{r['ratio']:.2f} ({r['e2e_s']:.2f} s / {r['model_s']:.2f} s)", f"<= {GOAL:g}"],
                ["warm command (imports done) / model", f"{r['warm_ratio']:.2f} ({r['warm_command_s']:.2f} s)", ""],
                ["around the model: load (imports + weights), read, write (s)",
                 f"{r['load_s']:.2f}, {r['read_s']:.2f}, {r['write_s']:.2f}", ""],
                ["written G-buffers vs the pipeline's, max abs difference",
                 f"{r['written_vs_pipeline_max_abs_diff']:.3g}", "0"]])


def _gpu_md(r: dict) -> list[str]:
    from neural_render.bench.gpu_estimate import A100_BF16_PEAK, PUBLISHED_A100

    rows = [[x["backbone"], x["task"], x["frames"], f"{x['params_B']:.2f}", f"{x['tflops_per_step']:.1f}",
             f"{x['a100_seconds']:.1f}", (f"{PUBLISHED_A100['inverse (per pass)'] * 5:.1f} (5 passes)"
                                          if x["task"] == "inverse" else f"{PUBLISHED_A100['forward']:.1f}"),
             f"{x['memory_GiB']:.1f}"] for x in r["rows"]]
    return [f"MODELLED, not measured: a FLOP/memory model (no GPU here) at {r['size']}x{r['size']}, "
            f"{r['steps']} steps, "
            f"A100 bf16 peak {A100_BF16_PEAK / 1e12:.0f} TFLOP/s x an ASSUMED model FLOP utilisation of {r['mfu']}; "
            "memory = bf16 weights + peak activations. Only the DiffusionRenderer column is a measurement (published).",
            ""] + \
        _table(["backbone", "task", "frames", "params (B)", "TFLOP/step", "A100 s MODELLED (one run; joint = full "
                "G-buffer)", "DiffusionRenderer A100 s (published, measured)", "memory GiB MODELLED"], rows)


def _sweeps_md(s: dict, image_prefix: str) -> list[str]:
    inv = s["inverse"]["settings"]
    out = ["Each point: one call in a fresh process; working memory = VmHWM - VmRSS before the call (HWM reset via "
           "/proc/self/clear_refs after glibc malloc_trim, as in `bench inverse`).", ""]
    for name, title in (("inverse", f"Windowed inverse pipeline, joint mode, tiny config with RANDOM weights "
                                    f"(speed/memory only), window {inv['window']}/{inv['overlap']}, streamed output"),
                        ("shade", "Classical split-sum shader (sphere G-buffer, shipped env map; IBL precomputed)")):
        out += [f"**{title}**", ""]
        points = [("frames", q) for q in s[name]["frames"]] + [("resolution", q) for q in s[name]["sizes"]]
        rows = [[sweep, f"{p['frames']}", f"{p['size']}", p.get("steps") or "-"]
                + ([f"failed: {p['error']}", "", ""] if "error" in p else
                   [f"{p['seconds']:.3f}", _mib(p["working"]), _mib(p["process_peak"])]) for sweep, p in points]
        out += _table(["sweep", "frames", "px", "steps", "seconds", "working MiB", "process peak MiB"], rows) + [""]
    out += [" ".join(f"![{f[:-4]}]({image_prefix}{f})" for f in PLOTS)]
    return out


FORMATTERS = {"backbone": _backbone_md, "synth": _synth_md, "inverse": _inverse_md, "inverse-e2e": _inverse_e2e_md,
              "gpu-estimate": _gpu_md}


def markdown(result: dict, level: int = 2, image_prefix: str = "", title: bool = True) -> str:
    """The report; sections use headings of ``level``, the optional title ``level - 1``."""
    m, h = result["machine"], "#" * level
    lines = ["#" * (level - 1) + " Benchmarks", ""] if title else []
    lines += [f"Machine: {m['cpu_count']} CPUs ({m['cpu']}), torch {m['torch']}, Python {m['python']}, {m['date']}; "
              f"{result['threads']} torch thread(s); load average (1 min) {result['load_average_1min'][0]:.2f} at the "
              f"start, {result['load_average_1min'][-1]:.2f} at the end (the machine may be shared); "
              f"total wall time {result['total_seconds']:.0f} s (`neural-render bench all"
              f"{' --quick' if result['mode'] == 'quick' else ''}`).", ""]
    for name, r in result["benchmarks"].items():
        lines += [f"{h} {name} ({result['seconds'][name]:.0f} s)", ""] + FORMATTERS[name](r) + [""]
    for name, err in [(k, v) for k, v in result["errors"].items() if not k.startswith("sweep ")]:
        lines += [f"{h} {name}", "", f"not measured: {err}", ""]
    lines += [f"{h} time and peak memory vs frames and resolution ({result['seconds']['sweeps']:.0f} s)", ""]
    lines += _sweeps_md(result["sweeps"], image_prefix)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------- writing
def write_plots(result: dict, out_dir: Path) -> list[Path]:
    from neural_render.bench.plots import line_plot

    labels = {"inverse": "inverse pipeline (tiny, joint, windowed)", "shade": "split-sum shader"}
    paths = []
    for file, (sweep, value, title, xlabel, ylabel) in PLOTS.items():
        series = {}
        for name, label in labels.items():
            points = [p for p in result["sweeps"][name][sweep] if "error" not in p]
            xs = [p["frames" if sweep == "frames" else "size"] for p in points]
            ys = [p[value] / (2**20 if value == "working" else 1) for p in points]
            if xs:
                series[label] = (xs, ys)
        if not series:
            continue
        line_plot(out_dir / file, title, xlabel, ylabel, series)
        paths.append(out_dir / file)
    return paths


def replace_block(text: str, block: str) -> str:
    """Replace what lies between the bench:start and bench:end markers (each exactly once, in that order)."""
    from neural_render.errors import NeuralRenderError

    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise NeuralRenderError(f"README needs exactly one {START} ... {END} block")
    head, rest = text.split(START)
    return head + START + "\n" + block.rstrip() + "\n" + END + rest.split(END, 1)[1]


def _write_text(path: Path, text: str) -> None:
    from neural_render.io import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_report(result: dict, out_dir, readme=None) -> list[Path]:
    import shutil

    from neural_render.io import atomic_path

    out_dir = Path(out_dir)
    if readme is not None:  # fail before writing anything if the README has no block
        readme = Path(readme)
        replace_block(readme.read_text(encoding="utf-8"), "")
    written = write_plots(result, out_dir)
    _write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    _write_text(out_dir / "bench.md", markdown(result))
    written += [out_dir / "bench.json", out_dir / "bench.md"]
    if readme is not None:
        images = readme.parent / "docs" / "bench"
        for png in [p for p in written if p.suffix == ".png"]:
            with atomic_path(images / png.name) as tmp:
                shutil.copyfile(png, tmp)
            written.append(images / png.name)
        block = markdown(result, level=3, image_prefix="docs/bench/", title=False)
        _write_text(readme, replace_block(readme.read_text(encoding="utf-8"), block))
        written.append(readme)
    return written


def run(args) -> int:
    from neural_render.errors import NeuralRenderError

    if args.threads < 1:
        raise NeuralRenderError("--threads must be >= 1")
    if args.readme is not None:  # check the block before spending minutes measuring
        if not Path(args.readme).is_file():
            raise NeuralRenderError("--readme: no such file", args.readme)
        replace_block(Path(args.readme).read_text(encoding="utf-8"), "")
    from neural_render.io.output import open_folder

    open_folder(args.out, command="bench all", inputs=[args.readme])  # after every argument check, before measuring
    result = run_all(args.quick, args.threads)
    for path in write_report(result, args.out, args.readme):
        print(path)
    failed = f"; FAILED: {sorted(result['errors'])}" if result["errors"] else ""
    print(f"bench all: total {result['total_seconds']:.1f} s ({result['mode']}), load average "
          f"{result['load_average_1min'][0]:.2f} -> {result['load_average_1min'][-1]:.2f} on "
          f"{result['machine']['cpu_count']} CPUs" + failed)
    return 1 if result["errors"] else 0
