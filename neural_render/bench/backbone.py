"""``neural-render bench backbone``: adapter overhead, bf16 speed-up and gradient-checkpointing memory, one run.

Measured (all on the same random-init model config, random inputs, AdamW train steps = zero_grad + forward
+ MSE loss + backward + optimizer step; each timing: ``--warmup`` steps, then the median of ``--steps``, the
two sides of a ratio interleaved step by step so machine load hits both alike):
  * overhead  = our adapter's step time / the bare diffusers module's step time, equal config: the bare module
    is built with in_channels = latent + cond channels and fed the concatenated tensor in its own layout;
    the adapter has the same weights, a zero-expanded input projection, hooks and permutes. Goal <= 1.05.
  * bf16      = fp32 step time / bf16-autocast step time of the adapter (speed ratio; goal >= 1.5).
  * memory    = with and without gradient checkpointing: (a) activation bytes saved for backward by one
    forward (torch.autograd saved-tensor hooks, unique storages, parameters excluded: exact and
    deterministic); (b) peak RSS increase of one train step in a fresh subprocess (Linux VmHWM minus VmRSS
    just before the step; includes AdamW state and allocator slack, so it is coarse).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

HELP = "adapter vs bare diffusers step time, bf16/fp32 speed, memory with/without gradient checkpointing"


def add_arguments(parser) -> None:
    parser.add_argument("--backbone", choices=("svd", "wan"), default="svd", help="backbone to time (default svd)")
    parser.add_argument("--frames", type=int, default=4, help="latent frames T (default 4)")
    parser.add_argument("--size", type=int, default=32, help="latent height = width (default 32)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--cond-channels", type=int, default=4, help="condition channels concatenated (default 4)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (default 3)")
    parser.add_argument("--config", default=None, help="JSON dict of model config overrides (default: tiny config)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _setup(kind: str, frames: int, size: int, batch: int, cond: int, config: dict | None, autocast=None, seed=0):
    """Adapter, inputs and a (B,T,C,h,w) target. Everything seeded locally (torch.Generator / fork_rng)."""
    import torch

    from neural_render.models.backbone import build_backbone

    backbone = build_backbone(kind, config=config, tiny=True, cond_channels=cond, seed=seed, autocast_dtype=autocast)
    gen = torch.Generator().manual_seed(seed + 1)
    c, d = backbone.latent_channels, backbone.context_dim
    inputs = {
        "noisy": torch.randn(batch, frames, c, size, size, generator=gen),
        "timestep": torch.rand(batch, generator=gen) * 999,
        "cond": torch.randn(batch, frames, cond, size, size, generator=gen) if cond else None,
        "context": torch.randn(batch, 4, d, generator=gen),
    }
    target = torch.randn(batch, frames, c, size, size, generator=gen)
    return backbone, inputs, target


def _bare_model(backbone, kind: str, config: dict | None, cond: int, seed: int = 0):
    """The unmodified diffusers class with in_channels = latent + cond, carrying the adapter's weights."""
    import torch

    from neural_render.models.backbone.loading import (
        _model_class,
        tiny_svd_config,
        tiny_wan_config,
    )

    cfg = dict(tiny_svd_config() if kind == "svd" else tiny_wan_config())
    cfg.update(config or {})
    cfg["in_channels"] = backbone.latent_channels + cond
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bare = _model_class(kind)(**cfg)
    bare.load_state_dict(backbone.model.state_dict())
    if kind == "svd":
        from diffusers.models.attention_processor import AttnProcessor2_0

        bare.set_attn_processor(AttnProcessor2_0())
    return bare


def _adapter_step_fn(backbone, inputs, target):
    import torch

    opt = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad], lr=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(backbone(**inputs), target)
        loss.backward()
        opt.step()

    return step


def _bare_step_fn(bare, kind: str, backbone, inputs, target):
    import torch

    opt = torch.optim.AdamW([p for p in bare.parameters() if p.requires_grad], lr=1e-5)
    x = inputs["noisy"] if inputs["cond"] is None else torch.cat([inputs["noisy"], inputs["cond"]], dim=2)
    t, ctx = inputs["timestep"], inputs["context"]
    if kind == "svd":
        ids = torch.tensor([backbone.added_time_ids or [0.0] * backbone.num_added_time_ids]).expand(x.shape[0], -1)

        def forward():
            return bare(x, t, encoder_hidden_states=ctx, added_time_ids=ids, return_dict=False)[0]

    else:
        x_wan = x.permute(0, 2, 1, 3, 4).contiguous()
        target = target.permute(0, 2, 1, 3, 4).contiguous()

        def forward():
            return bare(x_wan, t, encoder_hidden_states=ctx, return_dict=False)[0]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(), target)
        loss.backward()
        opt.step()

    return step


def _interleaved_medians(step_a, step_b, steps: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        step_a()
        step_b()
    times_a, times_b = [], []
    for i in range(steps):
        order = ((step_a, times_a), (step_b, times_b)) if i % 2 == 0 else ((step_b, times_b), (step_a, times_a))
        for fn, times in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def saved_activation_bytes(backbone, inputs) -> int:
    """Bytes of unique non-parameter tensors autograd keeps for backward after one forward of ``backbone``."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = backbone(**inputs)
    del out
    return sum(seen.values())


def _vm_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def memory_probe(spec: dict) -> dict:
    """Run in a fresh process: peak RSS increase (bytes) of one adapter train step."""
    backbone, inputs, target = _setup(spec["kind"], spec["frames"], spec["size"], spec["batch"], spec["cond"],
                                      spec["config"])
    if spec["checkpointing"]:
        backbone.enable_gradient_checkpointing()
    step = _adapter_step_fn(backbone, inputs, target)
    before = _vm_kib("VmRSS")
    step()
    return {"peak_rss_increase": (_vm_kib("VmHWM") - before) * 1024}


def _rss_in_subprocess(spec: dict) -> int | None:
    code = (
        "import json,sys; from neural_render.bench.backbone import memory_probe; "
        "print(json.dumps(memory_probe(json.loads(sys.argv[1]))))"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                              timeout=900, check=False)
        return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_increase"])
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError, OSError):
        return None


def measure(kind="svd", frames=4, size=32, batch=1, cond=4, steps=20, warmup=3, config=None, rss=True,
            threads=None) -> dict:
    """All numbers of the benchmark as a dict (seconds, bytes, ratios). Load averages are recorded because
    other processes on the machine make step times noisy (the interleaving keeps the ratios fair)."""
    import os
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")  # bf16 rms_norm on CPU
    if threads:
        torch.set_num_threads(int(threads))
    load_before = os.getloadavg()[0]

    from neural_render.errors import NeuralRenderError

    if steps < 1 or warmup < 0 or frames < 1 or size < 1 or batch < 1 or cond < 0:
        raise NeuralRenderError("bench backbone: steps, frames, size, batch must be >= 1; warmup, cond-channels >= 0")
    backbone, inputs, target = _setup(kind, frames, size, batch, cond, config)
    bare = _bare_model(backbone, kind, config, cond)
    t_adapter, t_bare = _interleaved_medians(
        _adapter_step_fn(backbone, inputs, target), _bare_step_fn(bare, kind, backbone, inputs, target), steps, warmup
    )
    del bare
    bf16, _, _ = _setup(kind, frames, size, batch, cond, config, autocast="bfloat16")
    t_fp32, t_bf16 = _interleaved_medians(
        _adapter_step_fn(backbone, inputs, target), _adapter_step_fn(bf16, inputs, target), steps, warmup
    )
    del bf16
    saved = {}
    for ckpt in (False, True):
        (backbone.enable_gradient_checkpointing if ckpt else backbone.disable_gradient_checkpointing)()
        saved[ckpt] = saved_activation_bytes(backbone, inputs)
    backbone.disable_gradient_checkpointing()
    rss_bytes = {}
    if rss:
        for ckpt in (False, True):
            spec = {"kind": kind, "frames": frames, "size": size, "batch": batch, "cond": cond, "config": config,
                    "checkpointing": ckpt}
            rss_bytes[ckpt] = _rss_in_subprocess(spec)
    return {
        "backbone": kind,
        "shape": [batch, frames, backbone.latent_channels, size, size],
        "cond_channels": cond,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "steps": steps,
        "step_s_adapter": t_adapter,
        "step_s_bare": t_bare,
        "overhead_ratio": t_adapter / t_bare,
        "step_s_fp32": t_fp32,
        "step_s_bf16": t_bf16,
        "bf16_speed_ratio": t_fp32 / t_bf16,
        "saved_activation_bytes": saved[False],
        "saved_activation_bytes_checkpointing": saved[True],
        "peak_rss_increase_bytes": rss_bytes.get(False),
        "peak_rss_increase_bytes_checkpointing": rss_bytes.get(True),
    }


def _mib(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def format_table(r: dict) -> str:
    rows = [
        ("backbone", f"{r['backbone']} latents {tuple(r['shape'])} + {r['cond_channels']} cond ch, "
                     f"{r['parameters']:,} params, {r['torch_threads']} threads"),
        ("machine load (1-min avg, start/end)",
         f"{r['load_average_1min'][0]:.2f} / {r['load_average_1min'][1]:.2f} on {r['cpu_count']} CPUs"),
        ("adapter step / bare diffusers step", f"{r['overhead_ratio']:.3f}  ({r['step_s_adapter'] * 1e3:.1f} ms / "
                                               f"{r['step_s_bare'] * 1e3:.1f} ms; goal <= 1.05)"),
        ("fp32 step / bf16-autocast step", f"{r['bf16_speed_ratio']:.3f}  ({r['step_s_fp32'] * 1e3:.1f} ms / "
                                           f"{r['step_s_bf16'] * 1e3:.1f} ms; goal >= 1.5)"),
        ("saved activations, no checkpointing", _mib(r["saved_activation_bytes"])),
        ("saved activations, checkpointing", _mib(r["saved_activation_bytes_checkpointing"])),
        ("peak RSS increase/step, no checkpointing", _mib(r["peak_rss_increase_bytes"])),
        ("peak RSS increase/step, checkpointing", _mib(r["peak_rss_increase_bytes_checkpointing"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append(f"(median of {r['steps']} train steps per side, interleaved; saved activations via autograd "
                 "saved-tensor hooks; RSS via /proc VmHWM in a fresh process)")
    return "\n".join(lines)


def run(args) -> int:
    from neural_render.errors import NeuralRenderError

    config = None
    if args.config:
        try:
            config = json.loads(args.config)
        except ValueError as err:
            raise NeuralRenderError(f"--config is not JSON: {err}") from None
        if not isinstance(config, dict):
            raise NeuralRenderError("--config must be a JSON object")
    result = measure(
        args.backbone, args.frames, args.size, args.batch, args.cond_channels, args.steps, args.warmup, config,
        rss=not args.no_rss, threads=args.threads,
    )
    print(json.dumps(result) if args.json else format_table(result))
    return 0
