"""``neural-render bench gpu-estimate``: FLOP and memory model of full-size backbones, beside DiffusionRenderer's
figures.

No GPU and no weights are needed: the real diffusers classes (SVD-xt UNet, Wan 2.1 1.3B transformer, with their
published configs) are built under ``FakeTensorMode`` (shapes only, no memory), one forward pass at the requested
video size is traced with ``torch.utils.flop_counter.FlopCounterMode``, and live activation bytes are tracked
per aten op (views excluded; an inference-time peak, SDPA kept as one fused op as on a GPU). Time on a GPU is then
``steps x FLOPs / (peak FLOP/s x MFU)``; the assumptions (peak, MFU, steps, bf16) are printed with the table.

DiffusionRenderer's published A100 times (SVD-based model, 512x512, 24 frames): inverse 9.7 s per G-buffer
pass (5 runs for a full G-buffer), forward 20.3 s. Our joint inverse mode predicts all five passes in one run.
"""

from __future__ import annotations

import weakref

HELP = "estimate GPU time and memory of SVD- and Wan-1.3B-size backbones at 512x512x24 (FLOP/memory model, no GPU)"

#: DiffusionRenderer, CVPR 2025, A100 timings (seconds) at 512x512x24.
PUBLISHED_A100 = {"inverse (per pass)": 9.7, "forward": 20.3}
A100_BF16_PEAK = 312e12
LATENT_CHANNELS = 4
WAN_LATENT_CHANNELS = 16
#: condition latents: inverse = RGB video; forward = 5 G-buffer passes + 3 env encodings
CONDITIONS = {"inverse": 1, "forward": 8}

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)


def add_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=512, help="square video size in pixels (default 512)")
    parser.add_argument("--frames", type=int, default=24, help="frames (default 24; Wan uses the next 1+4k)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps assumed (default 20)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOP utilisation (default 0.4)")
    parser.add_argument("--backbones", nargs="+", default=["svd", "wan"], choices=["svd", "wan"],
                        help="backbones to model (default: svd wan)")


class _LiveBytes:
    """TorchDispatchMode bookkeeping: bytes of live op outputs and their peak."""

    def __init__(self):
        self.live = 0
        self.peak = 0

    def track(self, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._free, size)

    def _free(self, size: int) -> None:
        self.live -= size


def trace(model, inputs: tuple, kwargs: dict) -> tuple[float, int]:
    """(FLOPs of one forward, peak live activation bytes) of ``model(*inputs, **kwargs)`` under no_grad."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import FlopCounterMode

    live = _LiveBytes()

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kw=None):
            out = func(*args, **(kw or {}))
            if func.is_view:  # views share their input's memory
                return out
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    live.track(t)
            return out

    with torch.no_grad(), FlopCounterMode(display=False) as flops, Track():
        model(*inputs, **kwargs)
    return float(flops.get_total_flops()), live.peak


def _svd(size: int, frames: int, cond: int, dtype):
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    h = size // 8
    model = UNetSpatioTemporalConditionModel(in_channels=LATENT_CHANNELS * (1 + cond))
    inputs = (torch.empty(1, frames, LATENT_CHANNELS * (1 + cond), h, h, dtype=dtype), torch.empty(1, dtype=dtype),
              torch.empty(1, 1, 1024, dtype=dtype), torch.empty(1, 3, dtype=dtype))
    return model, inputs, {"return_dict": False}, frames


def _wan(size: int, frames: int, cond: int, dtype):
    import torch
    from diffusers import WanTransformer3DModel

    t = (max(frames - 1, 0) + 3) // 4 + 1  # latent frames of the next 1+4k video length
    h = size // 8
    model = WanTransformer3DModel(**{**WAN_1_3B, "in_channels": WAN_LATENT_CHANNELS * (1 + cond)})
    inputs = (torch.empty(1, WAN_LATENT_CHANNELS * (1 + cond), t, h, h, dtype=dtype), torch.empty(1, dtype=dtype),
              torch.empty(1, 4, 4096, dtype=dtype))
    return model, inputs, {"return_dict": False}, 4 * (t - 1) + 1


BUILDERS = {"svd": ("SVD-xt UNet", _svd), "wan": ("Wan 2.1 1.3B", _wan)}


def estimate(backbone: str, task: str, size: int, frames: int, steps: int, mfu: float) -> dict:
    """One row of the model: params, TFLOPs/step, seconds on an A100 (bf16), weights + activation memory (GiB)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    name, build = BUILDERS[backbone]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build in bf16 (module.to() cannot swap fake parameters)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            model, inputs, kwargs, video_frames = build(size, frames, CONDITIONS[task], torch.bfloat16)
            params = sum(p.numel() for p in model.parameters())
            flops, activation_bytes = trace(model, inputs, kwargs)
    finally:
        torch.set_default_dtype(default)
    seconds = steps * flops / (A100_BF16_PEAK * mfu)
    return {"backbone": name, "task": task, "frames": video_frames, "params_B": params / 1e9,
            "tflops_per_step": flops / 1e12, "a100_seconds": seconds,
            "memory_GiB": (params * 2 + activation_bytes) / 2 ** 30}


def measure(size: int = 512, frames: int = 24, steps: int = 20, mfu: float = 0.4,
            backbones=("svd", "wan")) -> list[dict]:
    """The rows of the table: :func:`estimate` for every backbone and task (inverse, forward)."""
    from neural_render.errors import NeuralRenderError

    if size < 64 or size % 16 or frames < 1 or steps < 1 or not 0 < mfu <= 1:
        raise NeuralRenderError("need --size >= 64 and a multiple of 16, --frames >= 1, --steps >= 1, 0 < --mfu <= 1")
    return [estimate(b, task, size, frames, steps, mfu) for b in backbones for task in ("inverse", "forward")]


def run(args) -> int:
    rows = measure(args.size, args.frames, args.steps, args.mfu, args.backbones)
    print(f"GPU estimate at {args.size}x{args.size}: A100 bf16 peak {A100_BF16_PEAK / 1e12:.0f} TFLOP/s x MFU "
          f"{args.mfu}, {args.steps} steps, batch 1, inference (weights bf16 + peak live activations; VAE not "
          "included)")
    print("| backbone | task | frames | params (B) | TFLOP/step | A100 s (one run) | full G-buffer s (joint: 1 run) "
          "| DiffusionRenderer A100 s | memory GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        published = PUBLISHED_A100["inverse (per pass)"] * 5 if r["task"] == "inverse" else PUBLISHED_A100["forward"]
        full = f"{r['a100_seconds']:.1f}" if r["task"] == "inverse" else "-"
        print(f"| {r['backbone']} | {r['task']} | {r['frames']} | {r['params_B']:.2f} | {r['tflops_per_step']:.1f} "
              f"| {r['a100_seconds']:.1f} | {full} | {published:.1f}{' (5 passes)' if r['task'] == 'inverse' else ''} "
              f"| {r['memory_GiB']:.1f} |")
    return 0
