"""Relighting evaluation: inverse -> target env map -> forward, against the path tracer under that env map.

Data: a synth dataset (``--data``, env-map files) and the SAME clips rendered under another env map
(:func:`make_relight_dataset`: scene, camera, motion, frame seeds and env rotation kept; the env map becomes the one
``shift`` places later in the dataset's list); made from ``--data`` when the folder does not exist.

Methods, each scored per clip (PSNR / SSIM on display sRGB of clamp(x, 0, 1), :func:`.forward.scores`) against the
path-traced video under the target env map:

* relight: the inverse model decomposes the input video, the forward model renders the estimate under the target;
* input returned unchanged (the "do nothing" baseline a relighting must beat);
* classical split-sum shader on the SAME estimated G-buffers, plain and pixel-filtered (the classical pipeline);
* reference: the forward model on the EXACT G-buffers under the target (what a perfect inverse model would give).

Comparisons: relight vs unchanged input, vs classical, vs pixel-filtered classical, Holm-corrected hierarchical
bootstrap over env maps then clips (:mod:`.stats`).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

RELIGHT_SPEC = "relight.json"
RELIGHT = "relight: inverse -> target env -> neural forward"
UNCHANGED = "input returned unchanged"
CLASSICAL = "classical split-sum on the estimated G-buffers"
FILTERED = "classical split-sum + pixel filter on the estimated G-buffers"
REFERENCE = "reference: neural forward on the exact G-buffers"


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


def evaluate(relight_pipe, clips: list[Path], relit: dict[str, Path], *, domain: str = "synthetic", seed: int = 0,
             log=None) -> dict:
    """Relighting evaluation (module doc); ``relit``: {clip name: the same clip under the target env map}; ``log``:
    where the per-clip progress lines go (default: this module's logger, INFO)."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.evaluation.common import clip_group
    from neural_render.evaluation.forward import method_means, method_rows, scores
    from neural_render.io import read_clip, read_clip_envmap
    from neural_render.render.pixel_filter import pixel_filter
    from neural_render.render.shade import prepare_ibl, shade

    log = log or logger.info
    per_method: dict[str, list] = {}
    groups, used = [], []
    for clip_dir in clips:
        if clip_dir.name not in relit:
            raise NeuralRenderError(f"no relit counterpart of {clip_dir.name}", clip_dir)
        clip, target = read_clip(clip_dir), read_clip(relit[clip_dir.name])
        env2 = read_clip_envmap(relit[clip_dir.name], target.meta)
        video, cam, truth = clip.rgb, clip.camera, target.rgb
        estimate = relight_pipe.decompose(video, seed=seed)
        out = relight_pipe.relight(video, [env2], camera=cam, gbuffer=estimate, seed=seed, domain=domain)
        ibl = prepare_ibl(env2)
        classical = shade(estimate, cam, ibl)
        reference = relight_pipe.forward.render(clip.gbuffer.replace(mask=None), cam, env2,
                                                generator=torch.Generator().manual_seed(seed), domain=domain).rgb
        for name, pred in ((RELIGHT, out.videos[0]), (UNCHANGED, video), (CLASSICAL, classical),
                           (FILTERED, pixel_filter(classical)), (REFERENCE, reference)):
            per_method.setdefault(name, []).append(scores(pred, truth))
        groups.append(clip_group(relit[clip_dir.name]))
        used.append(clip_dir.name)
        log(f"  {clip_dir.name}: relight {per_method[RELIGHT][-1][0]:.2f} dB, unchanged "
            f"{per_method[UNCHANGED][-1][0]:.2f} dB, classical {per_method[CLASSICAL][-1][0]:.2f} dB")
    means = method_means(per_method)
    pairs = [(RELIGHT, UNCHANGED), (RELIGHT, CLASSICAL), (RELIGHT, FILTERED)]
    return {"num_clips": len(used), "clips": used, "groups": sorted(set(groups)), "per_clip": per_method,
            "mean": means, "comparison": method_rows(per_method, groups, pairs, seed)}


def format_report(result: dict) -> str:
    from neural_render.evaluation.forward import method_table_lines

    lines = [f"relighting, {result['num_clips']} clips in {len(result['groups'])} target env-map group(s) of "
             f"{result['data']} (split: {result.get('split') or 'unknown'}) -> {result['relight_data']}; PSNR / SSIM "
             "vs the path tracer under the target env map (display sRGB of clamp(x, 0, 1)), mean over clips",
             *method_table_lines(result, 62, "relight")]
    return "\n".join(lines)
