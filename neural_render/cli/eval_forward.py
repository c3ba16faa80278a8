"""``neural-render eval forward --data HELDOUT --model data/models/forward_tiny``: forward and relighting accuracy.

Forward part (clips of HELDOUT, a ``neural-render synth`` folder rendered with the TEST env maps): every method
renders each clip's exact G-buffers under the clip's env map (its rotation and the per-frame camera included) and
is scored against the path-traced RGB. Scores: PSNR and SSIM (neural_render.metrics) per clip on display sRGB of
clamp(x, 0, 1) (the space the neural model renders in), averaged over clips. Methods:

* neural forward model, all passes; normal only; basecolor only (partial G-buffers, presence masks 0 elsewhere)
* classical split-sum shader (render/shade.py) on the exact G-buffers (mask included); normal only (its defaults);
  and the same pixel-filtered (Gaussian, sigma 0.5 px): the path tracer integrates each pixel's footprint (box
  filter) while G-buffers are point-sampled at pixel centres, so the plain shader is aliased at texture and object
  edges; sigma = 0.5 px maximised the shader's PSNR on TRAIN clips (0.3 .. 0.7 px tried), a stronger baseline
* trivial: basecolor as RGB (env along the view ray on background pixels); mean colour of the GT video (oracle)

Relighting part (``--relight-data DIR``; made from HELDOUT when DIR does not exist, see :func:`make_relight_dataset`:
the same scenes, seeds and env rotation rendered under the NEXT test env map of the list): the inverse model
(``--inverse-model``, default the shipped one) decomposes the HELDOUT video; then relight(video, env2) (forward model)
and the classical shader fed with the inverse model's G-buffers under env2 are scored against the path-traced
video under env2; the neural forward model on the exact G-buffers under env2 is printed as a reference.
``--json`` writes every per-clip number.

Domain switch (models with Realiz3D domain shifters): each clip is also rendered with the OTHER domain embedding
(e_real vs e_synthetic everywhere); the row "neural forward, all passes, e_<other> everywhere" scores it, and the
mean / max absolute difference of the two renders (linear RGB) is printed: exactly 0 for untrained (zero-initialised)
shifters.
"""

from __future__ import annotations

HELP = "evaluate the forward renderer (and relighting) against path-traced ground truth: PSNR / SSIM"
RELIGHT_SPEC = "relight.json"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="held-out synth dataset folder (test env maps)")
    parser.add_argument("--model", default=None, help="forward pipeline folder (default: shipped forward_tiny)")
    parser.add_argument("--relight-data", default=None,
                        help="the held-out scenes under another env map (made from --data if missing)")
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline for relighting (default: shipped)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", choices=("real", "synthetic"), default="synthetic",
                        help="Realiz3D domain for models with shifters (default synthetic: the GT is synthetic)")
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    parser.add_argument("--device", default="cpu")


def _scores(pred, target) -> tuple[float, float]:
    from neural_render.data.forward_data import display_pack
    from neural_render.metrics import psnr, ssim

    a, b = (display_pack(pred) + 1.0) * 0.5, (display_pack(target) + 1.0) * 0.5
    return float(psnr(a, b).mean()), float(ssim(a, b).mean())


def make_relight_dataset(heldout, out, shift: int = 1) -> list:
    """Render the scenes of synth dataset ``heldout`` under another env map: clip i keeps its scene, camera, motion,
    frame seeds and env rotation; its env map becomes the one ``shift`` places later in the dataset's env list.
    Uses the synth engine's API (generate_scene, render_clip, write_synth_clip); writes ``out`` (synth.json, envmaps/,
    clip folders, relight.json). Existing complete clips are kept. Returns the clip folders."""
    import dataclasses
    import json
    from pathlib import Path

    from neural_render.data.clip_dataset import find_clips
    from neural_render.data_assets import envmap_path
    from neural_render.errors import NeuralRenderError
    from neural_render.io.atomic import atomic_path
    from neural_render.io.clip import is_complete_clip
    from neural_render.synth.dataset import (
        SPEC_NAME,
        SynthJob,
        clip_name,
        load_inputs,
        prepare_output,
        write_synth_clip,
    )
    from neural_render.synth.render import render_clip
    from neural_render.synth.scene import SynthConfig, generate_scene
    from neural_render.types import EnvMap

    heldout, out = Path(heldout), Path(out)
    try:
        spec = json.loads((heldout / SPEC_NAME).read_text())
        config = SynthConfig(**spec["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NeuralRenderError(f"not a synth dataset ({SPEC_NAME}): {err}", heldout) from None
    if config.sky or len(spec.get("envmaps", [])) < 2:
        raise NeuralRenderError("relighting data needs a dataset made from >= 2 env map files", heldout)
    paths = [str(envmap_path(name)) for name in spec["envmaps"]]
    job = SynthJob(out=str(out), config=config, seed=int(spec["seed"]), envmap_paths=paths)
    envs, meshes = load_inputs(job)
    if spec.get("meshes"):
        raise NeuralRenderError("relighting data from datasets with user meshes is not supported", heldout)
    clips = find_clips(heldout)
    prepare_output(job, envs, len(clips))
    names = [e.name for e in envs]
    for clip in clips:
        index = int(clip.name.rsplit("_", 1)[1])
        target = out / clip_name(index)
        if is_complete_clip(target):
            continue
        scene = generate_scene(config, job.seed, index, envs, meshes)
        other = envs[(names.index(scene.env.name) + shift) % len(envs)]
        scene = dataclasses.replace(scene, env=EnvMap(other.image, scene.env.rotation, other.name),
                                    env_info={"kind": "file", "name": other.name})
        write_synth_clip(target, scene, render_clip(scene))
    with atomic_path(out / RELIGHT_SPEC) as tmp:
        Path(tmp).write_text(json.dumps({"source": str(heldout), "env_shift": shift, "envmaps": names}, indent=1))
    return [out / clip_name(int(c.name.rsplit("_", 1)[1])) for c in clips]


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from neural_render.cli.forward import load_forward
    from neural_render.data.clip_dataset import find_clips
    from neural_render.errors import NeuralRenderError
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.render.pixel_filter import pixel_filter
    from neural_render.render.shade import prepare_ibl, shade
    from neural_render.types import GBuffer

    if args.max_clips is not None and args.max_clips < 1:
        raise NeuralRenderError(f"--max-clips must be >= 1, got {args.max_clips}")
    clips = find_clips(args.data)[: args.max_clips]
    if not clips:
        raise NeuralRenderError("no clips found", args.data)
    pipe = load_forward(args.model, args.device)
    relight_pipe = relight_clips = None
    if args.relight_data is not None:
        from neural_render.cli.inverse import load_model, resolve_device
        from neural_render.pipelines.relight import RelightPipeline

        relight_pipe = RelightPipeline(load_model(args.inverse_model, resolve_device(args.device)), pipe)
        if not Path(args.relight_data).is_dir():
            print(f"making relighting data {args.relight_data} from {args.data} (synth engine, next env map)", flush=True)
            make_relight_dataset(args.data, args.relight_data)
        relight_clips = {c.name: c for c in find_clips(args.relight_data)}
    rows: dict[str, list] = {}
    other_domain = "real" if args.domain == "synthetic" else "synthetic"
    switch: list[tuple[float, float]] = []  # (mean, max) |render(domain) - render(other domain)| per clip

    def add(name, pred, target):
        rows.setdefault(name, []).append(_scores(pred, target))

    def neural(gbuffer, camera, env, domain=args.domain):
        gen = torch.Generator().manual_seed(args.seed)
        return pipe.render(gbuffer, camera, env, generator=gen, domain=domain).rgb

    for clip_dir in clips:
        clip = read_clip(clip_dir)
        env = read_clip_envmap(clip_dir, clip.meta)
        gb, cam, gt, ibl = clip.gbuffer, clip.camera, clip.rgb, prepare_ibl(env)
        rendered = neural(gb.replace(mask=None), cam, env)
        add("neural forward, all passes", rendered, gt)
        if pipe.domain_shifters is not None:
            other = neural(gb.replace(mask=None), cam, env, other_domain)
            add(f"neural forward, all passes, e_{other_domain} everywhere", other, gt)
            difference = (other - rendered).abs()
            switch.append((float(difference.mean()), float(difference.max())))
        classical = shade(gb, cam, ibl)
        add("classical split-sum, exact G-buffers", classical, gt)
        add("classical split-sum + pixel filter (sigma 0.5 px)", pixel_filter(classical), gt)
        sky = shade(GBuffer(normal=gb.normal, mask=torch.zeros_like(gb.mask)), cam, ibl)
        add("trivial: basecolor as RGB", gb.mask * gb.basecolor + (1 - gb.mask) * sky, gt)
        add("trivial: mean colour of GT (oracle)", gt.mean(dim=(1, 3, 4), keepdim=True).expand_as(gt), gt)
        add("neural forward, normal only", neural(GBuffer(normal=gb.normal), cam, env), gt)
        add("neural forward, basecolor only", neural(GBuffer(basecolor=gb.basecolor), cam, env), gt)
        add("classical split-sum, normal only", shade(GBuffer(normal=gb.normal, mask=gb.mask), cam, ibl), gt)
        if relight_pipe is not None and clip_dir.name in relight_clips:
            other = read_clip(relight_clips[clip_dir.name])
            env2 = read_clip_envmap(relight_clips[clip_dir.name], other.meta)
            estimate = relight_pipe.decompose(gt, seed=args.seed)
            relit = relight_pipe.relight(gt, [env2], camera=cam, gbuffer=estimate, seed=args.seed, domain=args.domain)
            add("relight: inverse -> env2 -> neural forward", relit.videos[0], other.rgb)
            add("relight: classical split-sum on inverse G-buffers", shade(estimate, cam, prepare_ibl(env2)), other.rgb)
            add("relight reference: neural forward on exact G-buffers", neural(gb.replace(mask=None), cam, env2),
                other.rgb)
        print(f"  {clip_dir.name}: neural {rows['neural forward, all passes'][-1][0]:.2f} dB, classical "
              f"{rows['classical split-sum, exact G-buffers'][-1][0]:.2f} dB", flush=True)
    means = {name: (sum(p for p, _ in v) / len(v), sum(s for _, s in v) / len(v), len(v)) for name, v in rows.items()}
    first = read_clip(clips[0], passes=[], rgb=False).meta
    h, w = first.height, first.width
    print(f"\nforward rendering, {len(clips)} clips of {args.data} ({w}x{h}); PSNR / SSIM vs path-traced RGB on "
          f"display sRGB of clamp(x, 0, 1), mean over clips; model {pipe.forward_config.get('info', {})}")
    print(f"{'method':55s} {'PSNR dB':>8s} {'SSIM':>7s} {'clips':>6s}")
    for name, (p, s, n) in means.items():
        print(f"{name:55s} {p:8.2f} {s:7.4f} {n:6d}")
    gap = means["neural forward, all passes"][0] - means["classical split-sum, exact G-buffers"][0]
    filtered = means["neural forward, all passes"][0] - means["classical split-sum + pixel filter (sigma 0.5 px)"][0]
    print(f"neural - classical: {gap:+.2f} dB (goal >= +2 dB); neural - pixel-filtered classical: {filtered:+.2f} dB")
    domain_switch = None
    if switch:
        domain_switch = {"domains": [args.domain, other_domain], "mean_abs": sum(m for m, _ in switch) / len(switch),
                         "max_abs": max(m for _, m in switch)}
        print(f"domain switch e_{args.domain} -> e_{other_domain}: mean |difference| {domain_switch['mean_abs']:.3g}, "
              f"max {domain_switch['max_abs']:.3g} (linear RGB; 0 for untrained shifters)")
    if args.json:
        from neural_render.io.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps({"data": str(args.data), "clips": [c.name for c in clips],
                                             "per_clip": rows, "mean": means, "neural_minus_classical_db": gap,
                                             "domain_switch": domain_switch},
                                            indent=1))
    return 0
