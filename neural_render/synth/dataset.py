"""Synthetic dataset writer: N clips rendered into clip folders, atomically per clip, resumable.

Layout of ``out/``::

    synth.json                 the content-defining arguments (a re-run with other ones is refused)
    envmaps/<name>.exr         env maps used by the clips (float32, exactly the images Mitsuba was given)
    clip_000000/               a clip folder (io/clip.py) + the files below, renamed into place when complete
      meta.json                extra["synth"]: seed, config, objects (id, kind, material, motion), camera
                               trajectory, env, frame seeds, Mitsuba variant; envmap: path (../envmaps/<name>.exr
                               or sky.exr), rotation_deg [yaw, pitch, roll], rotation_matrix (EnvMap.rotated)
      frames/000000.exr        rgb (Mitsuba path tracing, linear) + basecolor, normal, depth, roughness,
                               metallic, mask
      frames/flow_000000.exr   forward optical flow t -> t+1: channels flow.U, flow.V (pixels, x right, y down)
                               and flow.valid (1 = visible at t+1), see synth/flow.py (io/exr.py frame files only
                               take the standard passes, hence a separate file)
      frames/object_id_000000.exr  channel object_id.Y: object id per pixel (0 background, 1.. mesh index + 1)
      sky.exr                  the procedural sky (sky clips only)
      preview.png, rgb.mp4     contact sheet and video preview (with ``preview``)
      rendered/                (with ``proxy``) a clip folder whose rgb is the CLASSICAL split-sum render
                               (render/shade.py: no shadows, no inter-reflection) of this clip's exact G-buffers
                               under the same rotated env map: the "rendered" side of the sim-to-real proxy
                               benchmark, beside this clip's path-traced rgb (the "real" side). Derived data only:
                               not part of synth.json, and ``proxy`` on a finished dataset just adds the folders.

A clip is rendered in a hidden temporary folder beside its target and renamed into place only when every file is
written, so a killed run never leaves a broken clip; re-running skips finished clips (their content is a pure
function of the seed and the clip index, see synth/scene.py) and removes temporary folders of dead runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError

SPEC_NAME = "synth.json"
ENV_DIR = "envmaps"
FLOW_FILE = "frames/flow_{:06d}.exr"
OBJECT_ID_FILE = "frames/object_id_{:06d}.exr"
PREVIEW_NAME = "preview.png"
PROXY_DIR = "rendered"
SKY_NAME = "sky.exr"
GENERATOR_VERSION = 1
#: hidden temporaries of atomic writes of a clip (also nested ones of write_clip): ".clip_N.tmp-PID-HEX..."
_TEMP = re.compile(r"^\.+clip_\d{6}\.(?:tmp|old)-(\d+)-[0-9a-f]+")


def clip_name(index: int) -> str:
    return f"clip_{index:06d}"


@dataclass
class SynthJob:
    """What to render (picklable, handed to worker processes)."""

    out: str
    config: object                       # neural_render.synth.scene.SynthConfig
    seed: int
    envmap_paths: list[str] = field(default_factory=list)   # ignored with config.sky
    mesh_paths: list[str] = field(default_factory=list)
    preview: bool = False
    proxy: bool = False             # also write rendered/ (split-sum render of the G-buffers), see module doc

    def spec(self) -> dict:
        """Content-defining arguments (the clip count is not: a larger run extends a smaller one)."""
        return {"generator_version": GENERATOR_VERSION, "seed": int(self.seed), "config": self.config.to_dict(),
                "envmaps": [Path(p).stem for p in self.envmap_paths] if not self.config.sky else [],
                "meshes": [Path(p).name for p in self.mesh_paths]}


@dataclass
class ClipStats:
    index: int
    frames: int
    render_seconds: float   # raw Mitsuba time (scene load + path tracing + pixel readback)
    path_trace_seconds: float  # mi.render only
    seconds: float          # everything done for this clip (generate, render, G-buffers, flow, write)
    variant: str


def load_inputs(job: SynthJob):
    """Load and validate env maps and user meshes -> (list[EnvMap], {label: Geometry}); NeuralRenderError on bad
    input."""
    from neural_render.io.hdr import load_envmap
    from neural_render.synth.shapes import load_mesh_file

    envs = [] if job.config.sky else [fit_envmap(load_envmap(p), job.config.env_height) for p in job.envmap_paths]
    names = [e.name for e in envs]
    if len(set(names)) != len(names):
        raise NeuralRenderError(f"env map names must be unique, got {names}")
    if not job.config.sky and not envs:
        raise NeuralRenderError("no env maps given (use --envmaps or --sky)")
    meshes = {Path(p).name: load_mesh_file(p) for p in job.mesh_paths}
    return envs, meshes


def fit_envmap(env, height: int):
    """Env maps taller than ``height`` rows are shrunk to (height, 2 * height), energy-preserving (io/hdr.py);
    the shrunk image is what Mitsuba renders with and what the dataset stores."""
    import torch

    from neural_render.io.hdr import downsample_equirect
    from neural_render.types import EnvMap

    if env.height <= height:
        return env
    image = downsample_equirect(env.image.permute(1, 2, 0).numpy(), height)
    return EnvMap(torch.from_numpy(image).permute(2, 0, 1).contiguous(), env.rotation, env.name)


def prepare_output(job: SynthJob, envs, num_clips: int, first_clip: int = 0) -> list[int]:
    """Create ``out``, check/record synth.json, write shared env maps, clean dead temp folders; return the clips of
    first_clip..first_clip+num_clips-1 still to do."""
    from neural_render.io.atomic import atomic_path
    from neural_render.io.clip import is_complete_clip
    from neural_render.io.exr import read_exr
    from neural_render.io.hdr import write_hdr

    out = Path(job.out)
    if out.exists() and not out.is_dir():
        raise NeuralRenderError("output path exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    spec = job.spec()
    spec_path = out / SPEC_NAME
    if spec_path.exists():
        try:
            old = json.loads(spec_path.read_text())
        except (OSError, ValueError) as err:
            raise NeuralRenderError(f"unreadable {SPEC_NAME}: {err}", spec_path) from err
        if old != spec:
            raise NeuralRenderError("this folder holds a dataset made with different arguments "
                                    f"(see {SPEC_NAME}); use another --out", spec_path)
    else:
        with atomic_path(spec_path) as tmp:
            Path(tmp).write_text(json.dumps(spec, indent=1) + "\n")
    for env in envs:
        path = out / ENV_DIR / f"{env.name}.exr"
        image = env.image.permute(1, 2, 0).numpy()
        if path.exists():
            stored = read_exr(path)
            if all(np.array_equal(stored.get(c), image[..., i]) for i, c in enumerate("RGB")):
                continue
        write_hdr(path, image)
    _remove_dead_temporaries(out)
    return [i for i in range(first_clip, first_clip + num_clips)
            if not _clip_done(out / clip_name(i), job.config.num_frames, is_complete_clip, job.proxy)]


def _clip_done(clip_dir: Path, num_frames: int, is_complete_clip, proxy: bool = False) -> bool:
    if proxy and not is_complete_clip(clip_dir / PROXY_DIR):
        return False
    return _base_done(clip_dir, num_frames, is_complete_clip)


def _base_done(clip_dir: Path, num_frames: int, is_complete_clip) -> bool:
    if not clip_dir.is_dir() or not is_complete_clip(clip_dir):
        return False
    return all((clip_dir / FLOW_FILE.format(t)).is_file() and (clip_dir / OBJECT_ID_FILE.format(t)).is_file()
               for t in range(num_frames))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_temporaries(out: Path) -> None:
    """Delete hidden clip temp folders left by killed runs (their writer process no longer exists)."""
    for entry in out.iterdir():
        match = _TEMP.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def render_one_clip(job: SynthJob, index: int, envs, meshes, on_frame=None) -> ClipStats:
    """Generate, render and write clip ``index`` (atomically); returns its timings."""
    from neural_render.io.clip import is_complete_clip
    from neural_render.synth.render import render_clip
    from neural_render.synth.scene import generate_scene

    start = time.perf_counter()
    clip_dir = Path(job.out) / clip_name(index)
    if job.proxy and _base_done(clip_dir, job.config.num_frames, is_complete_clip):
        add_proxy_render(clip_dir)  # finished clip without rendered/: no path tracing needed
        return ClipStats(index, job.config.num_frames, 0.0, 0.0, time.perf_counter() - start, "none")
    scene = generate_scene(job.config, job.seed, index, envs, meshes)
    rendered = render_clip(scene, on_frame=on_frame)
    write_synth_clip(clip_dir, scene, rendered, job.preview, job.proxy)
    return ClipStats(index, scene.camera.num_frames, rendered.render_seconds, rendered.path_trace_seconds,
                     time.perf_counter() - start, rendered.variant)


def write_synth_clip(clip_dir: Path, scene, rendered, preview: bool = False, proxy: bool = False) -> None:
    """Write one rendered clip folder atomically (see module doc for the files; ``proxy`` adds rendered/)."""
    from neural_render.io.atomic import atomic_dir
    from neural_render.io.clip import Clip, ClipMeta, write_clip
    from neural_render.io.exr import write_exr
    from neural_render.io.hdr import write_hdr

    rotation = scene.env.rotation
    if scene.env_info["kind"] == "sky":
        env_path = SKY_NAME
    else:
        env_path = f"../{ENV_DIR}/{scene.env.name}.exr"
    extra = {"synth": {**scene.description(), "variant": rendered.variant, "generator_version": GENERATOR_VERSION,
                       "aux_files": {"flow": FLOW_FILE.replace("{:06d}", "%06d"),
                                     "object_id": OBJECT_ID_FILE.replace("{:06d}", "%06d")}}}
    meta = ClipMeta.for_camera(scene.camera, fps=scene.config.fps, extra=extra, envmap={
        "path": env_path, "rotation_deg": list(scene.env_rotation_deg), "rotation_matrix": rotation.tolist()})
    clip = Clip(rgb=rendered.rgb, gbuffer=rendered.gbuffer, camera=scene.camera, meta=meta)
    with atomic_dir(clip_dir) as tmp:
        write_clip(tmp, clip, rgb_format="exr", preview_mp4=preview)  # replaces the empty temp folder
        root = Path(tmp)
        flow = rendered.flow[0].numpy()
        valid = rendered.flow_valid[0].numpy()
        ids = rendered.object_id[0].numpy().astype(np.float32)
        for t in range(scene.camera.num_frames):
            write_exr(root / FLOW_FILE.format(t), {"flow.U": flow[t, 0], "flow.V": flow[t, 1],
                                                   "flow.valid": valid[t, 0]})
            write_exr(root / OBJECT_ID_FILE.format(t), {"object_id.Y": ids[t, 0]})
        if scene.env_info["kind"] == "sky":
            write_hdr(root / SKY_NAME, scene.env.image.permute(1, 2, 0).numpy())
        if preview:
            from neural_render.io.image import write_image
            from neural_render.viz.contact_sheet import gbuffer_contact_sheet
            write_image(root / PREVIEW_NAME, gbuffer_contact_sheet(rendered.gbuffer, rendered.rgb))
        if proxy:
            _write_proxy(root / PROXY_DIR, rendered.gbuffer, scene.camera, scene.env, meta)


def _write_proxy(target: Path, gbuffer, camera, env, meta) -> None:
    """Write ``target`` (a clip folder, atomically): rgb = split-sum render of ``gbuffer`` under ``env``."""
    import dataclasses

    from neural_render.io.clip import Clip, write_clip
    from neural_render.render.shade import prepare_ibl, shade

    rgb = shade(gbuffer, camera, prepare_ibl(env)).contiguous()
    extra = {"proxy": {"shader": "split-sum (render/shade.py)", "real": "..", "gbuffer": ".."}}
    proxy_meta = dataclasses.replace(meta, envmap=None, extra=extra, depth_scale=None)
    write_clip(target, Clip(rgb=rgb, gbuffer=type(gbuffer)(), camera=camera, meta=proxy_meta), rgb_format="exr",
               preview_mp4=False)


def add_proxy_render(clip_dir: str | os.PathLike) -> None:
    """Add ``rendered/`` to a finished synth clip from its stored G-buffers, camera and env map (same result as
    writing it with the clip: the EXR round trip is exact)."""
    from neural_render.io.clip import read_clip, read_clip_envmap

    clip = read_clip(clip_dir, rgb=False)
    env = read_clip_envmap(clip_dir, clip.meta)
    if env is None:
        raise NeuralRenderError("clip names no env map; cannot make its proxy render", clip_dir)
    _write_proxy(Path(clip_dir) / PROXY_DIR, clip.gbuffer, clip.camera, env, clip.meta)


def read_flow(clip_dir: str | os.PathLike, frame: int):
    """(flow (2, H, W) pixels, valid (1, H, W)) float32 numpy of ``frame`` of a synth clip."""
    from neural_render.io.exr import read_exr
    path = Path(clip_dir) / FLOW_FILE.format(frame)
    ch = read_exr(path)
    missing = [c for c in ("flow.U", "flow.V", "flow.valid") if c not in ch]
    if missing:
        raise NeuralRenderError(f"flow file lacks channels {missing}", path)
    return np.stack([ch["flow.U"], ch["flow.V"]]), ch["flow.valid"][None]


def read_object_ids(clip_dir: str | os.PathLike, frame: int) -> np.ndarray:
    """(1, H, W) int64 object ids of ``frame`` of a synth clip."""
    from neural_render.io.exr import read_exr
    path = Path(clip_dir) / OBJECT_ID_FILE.format(frame)
    ch = read_exr(path)
    if "object_id.Y" not in ch:
        raise NeuralRenderError("object id file lacks channel object_id.Y", path)
    return np.rint(ch["object_id.Y"]).astype(np.int64)[None]


def regenerate_scene(clip_dir: str | os.PathLike):
    """The :class:`~neural_render.synth.scene.SynthScene` (meshes with their per-frame placement, camera, env) of a
    finished synth clip, drawn again from its dataset's ``synth.json`` (scenes are a pure function of the seed and
    the clip index). Needs the dataset's ``envmaps/``; datasets made with user meshes (``--meshes``) cannot be
    redrawn (the mesh files are not stored) and raise :class:`NeuralRenderError`."""
    from neural_render.io.clip import read_meta
    from neural_render.io.hdr import load_envmap
    from neural_render.synth.scene import SynthConfig, generate_scene

    clip_dir = Path(clip_dir)
    info = read_meta(clip_dir).extra.get("synth")
    spec_path = clip_dir.parent / SPEC_NAME
    if not info or not spec_path.is_file():
        raise NeuralRenderError(f"not a synth clip (no extra.synth in meta.json or no ../{SPEC_NAME})", clip_dir)
    spec = json.loads(spec_path.read_text())
    if spec.get("meshes"):
        raise NeuralRenderError(f"made with user meshes {spec['meshes']}: their files are not stored", clip_dir)
    if spec.get("generator_version") != GENERATOR_VERSION:
        raise NeuralRenderError(f"generator version {spec.get('generator_version')} != {GENERATOR_VERSION}", spec_path)
    config = SynthConfig(**info["config"])
    envs = [] if config.sky else [load_envmap(clip_dir.parent / ENV_DIR / f"{name}.exr") for name in spec["envmaps"]]
    scene = generate_scene(config, int(info["seed"]), int(info["clip_index"]), envs, {})
    if [o.get("kind") for o in scene.objects] != [o.get("kind") for o in info["objects"]]:
        raise NeuralRenderError("the redrawn scene does not match the clip's recorded objects", clip_dir)
    return scene
