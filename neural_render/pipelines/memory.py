"""Memory guard of the video commands: estimate what a run holds and refuse it BEFORE decoding when over budget.

A run of ``inverse`` (and the inverse step of relight / edit / insert / autolabel) holds, per video frame, the decoded
input (uint8 + linear float32 at the input size), the G-buffer at the input size (float32, one channel per output
channel) plus full-size temporaries of the decode / write steps, and the model's work at the processing size. The
per-pixel factors below were measured (peak RSS of ``neural-render inverse`` over a fresh interpreter, see
``neural-render bench inverse-e2e`` and tests/hardening/test_sizes.py); the estimate errs on the high side.

Budget: ``NEURAL_RENDER_MEMORY_BUDGET`` (bytes, or with a K/M/G suffix, e.g. ``6G``; 0 or ``off`` disables the
guard), else :data:`RAM_FRACTION` of the physical memory (or of the cgroup limit when lower).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from neural_render.errors import NeuralRenderError

BUDGET_ENV = "NEURAL_RENDER_MEMORY_BUDGET"
RAM_FRACTION = 0.5
#: bytes per input pixel per frame besides the G-buffer: uint8 decode (3) + float32 rgb (12) + full-size temporaries
#: of decoding the G-buffer chunk by chunk and of the display conversions (measured: 24 frames of 1024x768 at 64x48
#: peaked at 2.7 GiB, 24 of 512x512 at 1.3-1.5 GiB)
FULL_BYTES_PER_PIXEL = 100
#: bytes per processed pixel per frame (resized input, latents, model activations of the tiny backbones, windows)
PROC_BYTES_PER_PIXEL = 600
#: the interpreter, torch, diffusers and a tiny model (~470 MiB measured)
BASE_BYTES = 500 * 2**20
#: output channels of the full inverse G-buffer: basecolor 3, normal 3, depth, roughness, metallic, mask
GBUFFER_CHANNELS = 10


@dataclass(frozen=True)
class MemoryEstimate:
    frames: int
    size: tuple[int, int]       # input (H, W)
    proc: tuple[int, int]       # processing (h, w)
    out_channels: int

    @property
    def full_bytes(self) -> int:
        h, w = self.size
        return self.frames * h * w * (FULL_BYTES_PER_PIXEL + 4 * self.out_channels)

    @property
    def proc_bytes(self) -> int:
        return self.frames * self.proc[0] * self.proc[1] * PROC_BYTES_PER_PIXEL

    @property
    def total(self) -> int:
        return BASE_BYTES + self.full_bytes + self.proc_bytes


def parse_bytes(text: str) -> int:
    """'6G' / '512M' / '1024K' / '123456' -> bytes (binary units); NeuralRenderError otherwise."""
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if value and value[-1] in "KMGT":
        scale, value = 1024 ** ("KMGT".index(value[-1]) + 1), value[:-1]
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise NeuralRenderError(f"{BUDGET_ENV} must be a byte count like 6G, 512M or 0 (off), got {text!r}")
    return int(number * scale)


def physical_memory() -> int | None:
    """Physical RAM in bytes (os.sysconf), lowered to the cgroup v2/v1 memory limit when there is one."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                limit = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if 0 < limit < (total or 1 << 62):
            total = limit
    return total


def memory_budget() -> int | None:
    """The budget in bytes (None: no guard): the environment variable, else a fraction of the RAM."""
    text = os.environ.get(BUDGET_ENV)
    if text is not None and text.strip():
        if text.strip().lower() in ("off", "none"):
            return None
        return parse_bytes(text) or None
    ram = physical_memory()
    return int(ram * RAM_FRACTION) if ram else None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(estimate: MemoryEstimate, source=None, budget: int | None = None, size_hint=None) -> None:
    """NeuralRenderError when ``estimate`` exceeds the budget (default :func:`memory_budget`), with a hint: a
    smaller ``--size`` (when the processing size is what costs), a shorter clip, a smaller input.
    ``size_hint(longer_side) -> (h, w)``: the processing shape for a --size (to suggest one that fits)."""
    budget = memory_budget() if budget is None else budget
    if budget is None or estimate.total <= budget:
        return
    t, (h, w), (ph, pw) = estimate.frames, estimate.size, estimate.proc
    hints = []
    room = budget - BASE_BYTES
    if size_hint is not None and estimate.proc_bytes > room / 2:
        for side in (2048, 1024, 768, 512, 384, 256, 128, 64):
            if side < max(ph, pw) and BASE_BYTES + estimate.full_bytes + MemoryEstimate(
                    t, (h, w), size_hint(side), estimate.out_channels).proc_bytes <= budget:
                hints.append(f"--size {side}")
                break
    per_frame = (estimate.full_bytes + estimate.proc_bytes) / max(t, 1)
    fit_frames = int(room // per_frame) if room > 0 else 0
    if 1 <= fit_frames < t:
        hints.append(f"a shorter clip (at most {fit_frames} frames)")
    if room > 0:
        per_pixel = (estimate.full_bytes + estimate.proc_bytes) / (t * h * w)
        scale = math.sqrt(room / (t * h * w * per_pixel))
        if scale < 1:
            sw, sh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
            hints.append(f"a smaller input (e.g. ffmpeg -vf scale={sw}:{sh})")
    if room <= 0:
        hints.append(f"a budget above the {_gib(BASE_BYTES)} the interpreter and model need")
    hint = (" try " + " or ".join(hints) + ";") if hints else ""
    raise NeuralRenderError(
        f"too big for memory: {t} frames of {w}x{h} processed at {pw}x{ph} with outputs at {w}x{h} need about "
        f"{_gib(estimate.total)}, over the budget of {_gib(budget)};{hint} the budget is {BUDGET_ENV} "
        f"(default {RAM_FRACTION:.0%} of the RAM)", source)
