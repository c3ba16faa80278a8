"""Overlapping temporal windows blended in latent space at every denoising step (any video length, no seams).

A long latent video (B, T, C, h, w) is covered by windows ``[start, stop)`` of ``window`` latent frames with
stride ``window - overlap``; the last window is shifted back to end at the last frame (same spans as
:func:`neural_render.metrics.temporal.window_spans`). At EVERY sampler step each window is denoised on its own
(the backbone never sees more than ``window`` frames) and the per-window results are merged into one full-length
latent by a weighted average whose weights ramp linearly across each overlap: in an overlap of ``o`` frames
the earlier window has weights ``o/(o+1) .. 1/(o+1)`` and the later one ``1/(o+1) .. o/(o+1)`` (they sum to 1);
frames covered by one window have weight 1. Because every window of the next step starts from the SAME blended
latent, neighbouring windows agree in their overlap and the hand-over is smooth (DiffusionRenderer-style
independent windows lose continuity at window borders). For the single-step ``x0`` denoiser the blend happens
once. With one window covering the whole video the result is bit-identical to :meth:`Denoiser.sample`.

Memory: the blend is done in place, window by window: a frame is written once every window covering it has
contributed, and the pending (partially accumulated) frames never exceed one window. Beyond the full-length
latent itself (and the caller's condition latents) the working memory is O(window), not O(T).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError

Span = tuple[int, int]


def plan_windows(num_frames: int, window: int, overlap: int) -> list[Span]:
    """[start, stop) spans over ``num_frames`` frames: stride ``window - overlap``, the last window shifted back to
    end at the last frame; one window ``(0, num_frames)`` when ``num_frames <= window``."""
    if num_frames < 1 or window < 1 or not 0 <= overlap < window:
        raise NeuralRenderError(f"windows need frames >= 1, window >= 1 and 0 <= overlap < window; got "
                                f"frames={num_frames}, window={window}, overlap={overlap}")
    if num_frames <= window:
        return [(0, num_frames)]
    stride = window - overlap
    starts = sorted(set(list(range(0, num_frames - window, stride)) + [num_frames - window]))
    return [(s, s + window) for s in starts]


def fit_windows(num_frames: int, codec, frame_rule, window: int, overlap: int) -> tuple[int, int, list[Span]]:
    """Windows in LATENT frames for a video of ``num_frames`` frames that respect the codec and backbone frame rules.

    codec: has ``latent_frames(T)`` (raises for a disallowed T) and ``temporal_factor`` f; frame_rule: the backbone's
    :class:`FrameRule` on latent frame counts. window / overlap are video frames, converted to latent frames
    (f > 1: 1 + (window - 1) // f and ceil(overlap / f)) and shortened until the backbone accepts them. Returns
    (padded video frames: the smallest T' >= T the codec accepts, e.g. 1 + 4k for the Wan VAE; latent frames,
    padded up for the backbone when one short window must be used; spans from :func:`plan_windows`).
    """
    if window < 1 or not 0 <= overlap < window:
        raise NeuralRenderError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap}")
    f = int(getattr(codec, "temporal_factor", 1))
    padded = num_frames
    while True:
        try:
            latent_t = codec.latent_frames(padded)
            break
        except NeuralRenderError:
            padded += 1
            if padded > num_frames + 64:
                raise
    lw, lo = latent_window(window, overlap, f)
    while lw > 1 and not frame_rule(lw):
        lw -= 1
    if not frame_rule(lw):
        raise NeuralRenderError(f"no window of <= {window} frames fits the backbone: {frame_rule.description}")
    while latent_t < lw and not frame_rule(latent_t):
        latent_t += 1  # one short window: pad latent frames (the caller repeats its last condition frame)
    return padded, latent_t, plan_windows(latent_t, lw, min(lo, lw - 1))


def latent_window(window: int, overlap: int, temporal_factor: int) -> tuple[int, int]:
    """Window / overlap in VIDEO frames -> in latent frames for a codec of ``temporal_factor`` f (causal codecs:
    1 + (window - 1) // f latent frames hold ``window`` video frames; overlap ceil(overlap / f)); f = 1: unchanged."""
    f = int(temporal_factor)
    if f == 1:
        return int(window), int(overlap)
    return max(1, (int(window) - 1) // f + 1), -(-int(overlap) // f)


def video_window(latent_frames: int, latent_overlap: int, temporal_factor: int) -> tuple[int, int]:
    """Inverse of :func:`latent_window`: latent window / overlap -> the video frames they cover (1 + (L - 1) f and
    o f for causal codecs of factor f > 1; unchanged for f = 1).
    ``latent_window(*video_window(L, o, f), f) == (L, o)``."""
    f = int(temporal_factor)
    if f == 1:
        return int(latent_frames), int(latent_overlap)
    return 1 + (int(latent_frames) - 1) * f, int(latent_overlap) * f


def video_span(start: int, stop: int, temporal_factor: int, num_frames: int) -> Span:
    """Latent frames [start, stop) -> the video frames they decode to (causal codecs: latent 0 = frame 0, latent k =
    frames 1 + (k-1) f .. k f), clipped to the ``num_frames`` real frames."""
    f = int(temporal_factor)
    if f == 1:
        return min(start, num_frames), min(stop, num_frames)
    return (0 if start == 0 else 1 + (start - 1) * f), min(num_frames, 1 + (stop - 1) * f)


def _check_spans(spans: Sequence[Span], num_frames: int) -> list[Span]:
    spans = [(int(a), int(b)) for a, b in spans]
    if not spans or spans[0][0] != 0 or spans[-1][1] != num_frames:
        raise NeuralRenderError(f"window spans {spans} must cover frames 0..{num_frames}")
    for (a0, b0), (a1, b1) in itertools.pairwise(spans):
        if not (a0 < a1 <= b0 < b1):
            raise NeuralRenderError(f"window spans {spans} must be ordered, overlapping or touching, without gaps")
    if any(b <= a for a, b in spans):
        raise NeuralRenderError(f"empty window in {spans}")
    return spans


def window_weights(spans: Sequence[Span], num_frames: int) -> list[Tensor]:
    """Per-window blend weights, one (stop - start,) float32 tensor per span (linear ramps across overlaps, > 0)."""
    spans = _check_spans(spans, num_frames)
    weights = []
    for k, (a, b) in enumerate(spans):
        w = torch.ones(b - a, dtype=torch.float32)
        if k > 0:  # rising ramp over the overlap with the previous window
            o = spans[k - 1][1] - a
            if o > 0:
                w[:o] = torch.arange(1, o + 1, dtype=torch.float32) / (o + 1)
        if k + 1 < len(spans):  # falling ramp over the overlap with the next window
            o = b - spans[k + 1][0]
            if o > 0:
                w[b - a - o:] = w[b - a - o:] * torch.arange(o, 0, -1, dtype=torch.float32) / (o + 1)
        weights.append(w)
    return weights


class OverlapBlender:
    """Blend per-window values into ``target`` (B, T, ...) IN PLACE, windows added in order.

    ``add(k, values)`` with values (B, stop_k - start_k, ...) accumulates window k; frames before the next window's
    start are then final and written to ``target`` (frames still covered by a later window keep their OLD value in
    ``target`` until then, so later windows read the un-blended input of this round). Pending sums never exceed
    one window. Call :meth:`reset` before each round.
    """

    def __init__(self, target: Tensor, spans: Sequence[Span]):
        self.target = target
        self.spans = _check_spans(spans, target.shape[1])
        self.weights = [w.to(device=target.device) for w in window_weights(self.spans, target.shape[1])]
        self.reset()

    def reset(self) -> None:
        self._next = 0
        self._lo = 0
        self._acc: Tensor | None = None     # (B, n, ...) weighted sum of frames [lo, lo + n)
        self._wsum: Tensor | None = None    # (n,) weight sum

    def add(self, k: int, values: Tensor) -> None:
        if k != self._next:
            raise NeuralRenderError(f"windows must be added in order: expected window {self._next}, got {k}")
        a, b = self.spans[k]
        target = self.target.shape
        if values.shape[0] != target[0] or values.shape[1] != b - a or values.shape[2:] != target[2:]:
            raise NeuralRenderError(f"window {k} values {tuple(values.shape)} do not fit frames [{a}, {b}) of "
                                    f"{tuple(self.target.shape)}")
        w = self.weights[k].to(values.dtype)
        shape = (1, -1) + (1,) * (values.ndim - 2)
        weighted = values * w.view(shape)
        if self._acc is None:
            acc, wsum = weighted, w.clone()
        else:
            carried = self._acc.shape[1]          # frames [a, a + carried) are pending from earlier windows
            acc = torch.cat([self._acc + weighted[:, :carried], weighted[:, carried:]], dim=1)
            wsum = torch.cat([self._wsum + w[:carried], w[carried:]])
        stop = self.spans[k + 1][0] if k + 1 < len(self.spans) else self.target.shape[1]
        done = stop - a
        if done > 0:
            self.target[:, a:stop] = (acc[:, :done] / wsum[:done].view(shape)).to(self.target.dtype)
        self._acc, self._wsum = acc[:, done:], wsum[done:]
        self._lo, self._next = stop, k + 1


def progress_bar(total: int, enabled: bool, desc: str | None = None):
    """tqdm progress bar (a no-op object when disabled or tqdm is missing)."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:  # pragma: no cover - tqdm ships with diffusers/lightning
            pass

    class _Null:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Null()


def windowed_sample(denoiser, predict_x0: Callable[[Tensor, Tensor, int, int], Tensor], shape: tuple[int, ...],
                    spans: Sequence[Span], num_steps: int, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, progress: bool = False,
                    desc: str | None = None, callback: Callable[[int, Tensor, Tensor], Tensor | None] | None = None
                    ) -> Tensor:
    """Sample latents of ``shape`` (B, T, C, h, w) window by window, blending overlaps at every step.

    predict_x0(x_window (B, L, C, h, w), sigma (B, L), start, stop) -> x0_hat (B, L, C, h, w): the denoised
    estimate of frames [start, stop) (the caller slices its condition with start/stop and calls
    :meth:`Denoiser.guided_x0`). spans: from :func:`plan_windows`. Noise is drawn once for the whole latent with
    ``generator`` (so windowing does not change it); steps follow :meth:`Denoiser.sampling_sigmas`.
    callback(step, sigma, x) runs after every step (all windows blended; sigma: the noise level x is now at); a
    returned tensor of the same shape replaces x.
    """
    if len(shape) != 5:
        raise NeuralRenderError(f"sample shape must be (B, T, C, h, w), got {tuple(shape)}")
    b, t = int(shape[0]), int(shape[1])
    spans = _check_spans(spans, t)
    sigmas = denoiser.sampling_sigmas(num_steps).to(device)
    gen_device = generator.device if generator is not None else device
    x = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
    starts = [a for a, _ in spans] + [t]
    for a, c in itertools.pairwise(starts):  # x_T = add_noise(0, noise, sigma_max), in place, disjoint chunks
        chunk = x[:, a:c]
        chunk.copy_(denoiser.add_noise(torch.zeros_like(chunk), chunk, sigmas[0].expand(b, c - a)))
    blender = OverlapBlender(x, spans)
    bar = progress_bar((len(sigmas) - 1) * len(spans), progress, desc)
    try:
        for i in range(len(sigmas) - 1):
            blender.reset()
            for k, (a, c) in enumerate(spans):
                x_window = x[:, a:c]
                level = sigmas[i].expand(b, c - a)
                next_level = sigmas[i + 1].expand(b, c - a)
                x0_hat = predict_x0(x_window, level, a, c)
                if x0_hat.shape != x_window.shape:
                    raise NeuralRenderError(f"predict_x0 returned {tuple(x0_hat.shape)} for a window of "
                                            f"{tuple(x_window.shape)}")
                blender.add(k, denoiser.step(x_window, x0_hat, level, next_level))
                bar.update(1)
            if callback is not None:
                replaced = callback(i, sigmas[i + 1], x)
                if replaced is not None:
                    if tuple(replaced.shape) != tuple(x.shape):
                        raise NeuralRenderError(f"step callback returned latents {tuple(replaced.shape)}, expected "
                                                f"{tuple(x.shape)}")
                    x.copy_(replaced)
    finally:
        bar.close()
    return x
