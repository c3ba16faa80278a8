"""Drive a dataset run: validate inputs, skip finished clips, render the rest (1 or more worker processes),
show a progress bar, and report throughput measured in the same run.

Timing report (:class:`SynthReport`): ``total_seconds`` is the wall time of the whole run (input loading,
scene generation, Mitsuba scene loading and path tracing, G-buffer ray casts, flow, EXR / preview writing);
``render_seconds`` is the raw Mitsuba render time of the same frames, summed over frames (scene load +
``mi.render``); ``ratio = total / render`` (with several workers: the summed per-clip work / render, since wall
time then overlaps). The goal is ratio <= 1.2. ``ratio_path_trace`` is the stricter total / ``mi.render`` alone
(scene loading counted as our overhead); both are printed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from neural_render.synth.dataset import ClipStats, SynthJob, load_inputs, prepare_output, render_one_clip

_WORKER_STATE: dict = {}


@dataclass
class SynthReport:
    clips_total: int
    clips_rendered: int
    clips_skipped: int
    frames_rendered: int
    total_seconds: float
    render_seconds: float
    path_trace_seconds: float
    work_seconds: float
    workers: int
    variant: str
    stats: list[ClipStats] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """total (or summed work with several workers) / raw Mitsuba render time."""
        if self.render_seconds <= 0:
            return float("nan")
        spent = self.total_seconds if self.workers == 1 else self.work_seconds
        return spent / self.render_seconds

    @property
    def ratio_path_trace(self) -> float:
        """Like :attr:`ratio` but against ``mi.render`` alone (scene loading counted as overhead)."""
        if self.path_trace_seconds <= 0:
            return float("nan")
        return (self.total_seconds if self.workers == 1 else self.work_seconds) / self.path_trace_seconds

    @property
    def frames_per_second(self) -> float:
        return self.frames_rendered / self.total_seconds if self.total_seconds > 0 else float("nan")

    def summary(self) -> str:
        lines = [f"synth: {self.clips_rendered} clip(s) rendered, {self.clips_skipped} already complete "
                 f"(of {self.clips_total}); Mitsuba variant {self.variant}; {self.workers} worker(s)"]
        if self.frames_rendered:
            lines += [f"  total time            {self.total_seconds:8.2f} s",
                      f"  raw Mitsuba render    {self.render_seconds:8.2f} s  (scene load + mi.render of the same "
                      f"{self.frames_rendered} frames; mi.render alone {self.path_trace_seconds:.2f} s)",
                      f"  ratio total / raw     {self.ratio:8.3f}    (goal <= 1.2"
                      + (", summed per-clip work with several workers)" if self.workers > 1 else ")"),
                      f"  ratio total / mi.render alone {self.ratio_path_trace:6.3f}",
                      f"  throughput            {self.frames_per_second:8.3f} frames/s"]
        return "\n".join(lines)


def _worker_init(job: SynthJob) -> None:
    import torch
    torch.set_num_threads(1)  # small tensors only; keeps torch's thread pool from fighting Mitsuba's
    _WORKER_STATE["job"] = job
    _WORKER_STATE["inputs"] = load_inputs(job)


def _worker_clip(index: int) -> ClipStats:
    envs, meshes = _WORKER_STATE["inputs"]
    return render_one_clip(_WORKER_STATE["job"], index, envs, meshes)


def run_synth(job: SynthJob, num_clips: int, workers: int = 1, progress: bool = True, first_clip: int = 0
              ) -> SynthReport:
    """Render clips first_clip..first_clip+num_clips-1 of ``job`` into ``job.out`` (skipping complete ones); see
    module doc. A later slice of a dataset holds scenes a model trained on its first clips never saw."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.render.mitsuba_variant import select_mitsuba_variant

    start = time.perf_counter()
    if num_clips < 1:
        raise NeuralRenderError(f"clips must be >= 1, got {num_clips}")
    if workers < 1:
        raise NeuralRenderError(f"workers must be >= 1, got {workers}")
    if first_clip < 0:
        raise NeuralRenderError(f"first clip must be >= 0, got {first_clip}")
    job.config.validate()
    # torch only handles small per-frame tensors here; its thread pool would fight Mitsuba's for the cores
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = None
    stats: list[ClipStats] = []
    try:
        envs, meshes = load_inputs(job)
        todo = prepare_output(job, envs, num_clips, first_clip)
        variant = select_mitsuba_variant().variant()
        if progress and todo:
            from tqdm import tqdm
            bar = tqdm(total=len(todo) * job.config.num_frames, unit="frame", desc="synth", file=sys.stderr,
                       dynamic_ncols=True)
        if workers == 1 or len(todo) <= 1:
            for index in todo:
                stats.append(render_one_clip(job, index, envs, meshes,
                                             on_frame=(lambda _t: bar.update(1)) if bar else None))
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=(job,)) as pool:
                for result in pool.imap_unordered(_worker_clip, todo):
                    stats.append(result)
                    if bar:
                        bar.update(result.frames)
    finally:
        if bar:
            bar.close()
        torch.set_num_threads(previous_threads)
    return SynthReport(clips_total=num_clips, clips_rendered=len(stats), clips_skipped=num_clips - len(todo),
                       frames_rendered=sum(s.frames for s in stats), total_seconds=time.perf_counter() - start,
                       render_seconds=sum(s.render_seconds for s in stats),
                       path_trace_seconds=sum(s.path_trace_seconds for s in stats),
                       work_seconds=sum(s.seconds for s in stats), workers=workers,
                       variant=stats[0].variant if stats else variant, stats=sorted(stats, key=lambda s: s.index))
