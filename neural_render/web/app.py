"""Gradio web demo: pick a clip and a light, rotate it, edit materials, press Run, see the video and a still.

Two sources:

* the **demo scene** (``neural_render.demo.scene``: analytic, exact G-buffers and object ids) rendered with the
  classical split-sum shader (``neural_render.render.shade``), exactly what ``neural-render demo`` uses; material
  edits go through :func:`neural_render.pipelines.relight.apply_material_edit` (whole frame or one object id);
* an **uploaded MP4**, re-rendered by the neural relight / edit pipelines
  (:class:`neural_render.pipelines.relight.RelightPipeline`: inverse -> new light / edited materials -> forward).
  That needs trained model folders (``--inverse-model`` / ``--model``, default ``data/models/*_tiny`` when
  present); without them the UI says so and renders nothing (no fake output).

The callbacks (:func:`run_job` and helpers) are plain functions of plain values; :func:`build_app` wires them
into a ``gradio.Blocks``. Bad input (unreadable video, wrong env map file, object id on an uploaded video)
raises :class:`NeuralRenderError`, which :func:`run_job` turns into a message in the UI.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from neural_render.errors import NeuralRenderError

DEMO_SCENE = "demo scene"
UPLOAD = "uploaded MP4"
TARGET_NONE = "no edit"
TARGET_ALL = "whole frame"
#: demo scene object ids (neural_render.demo.scene: 0 background, 1 ground, 2.. the spheres in SPHERES order)
OBJECTS = {"object 1: ground": 1, "object 2: red rough sphere": 2, "object 3: gold sphere": 3,
           "object 4: white glossy sphere": 4}
PASSES = ("basecolor", "roughness", "metallic")
DEFAULT_ENVMAP = "kiara_1_dawn"
NEEDS_MODEL = ("**Uploaded MP4s** are re-rendered by the neural pipelines, which need trained model folders: an "
               "inverse pipeline (`--inverse-model DIR`, default `data/models/inverse_tiny`) and a forward pipeline "
               "(`--model DIR`, default `data/models/forward_tiny`). Missing here: {missing}.")
NOTHING_RENDERED = " Nothing was rendered. The demo scene works without a model (classical split-sum shader)."
#: the still is small (the demo renders at 128x96): show it scaled up with visible pixels
CSS = "#result-still img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


@dataclass
class ServeConfig:
    """Settings of one app: demo scene size, uploaded-video frame cap, model folders, output folder."""

    frames: int = 16
    width: int = 128
    height: int = 96
    fps: float = 12.0
    max_frames: int = 24
    model: str | None = None            # forward pipeline folder (None: data/models/forward_tiny if present)
    inverse_model: str | None = None    # inverse pipeline folder (None: data/models/inverse_tiny if present)
    device: str = "cpu"
    out_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="neural_render_web_")))


_CACHE: dict = {}


def find_models(cfg: ServeConfig) -> dict[str, Path | None]:
    """{'inverse': folder or None, 'forward': folder or None}: the given folders (checked by neural_render.hub),
    else the shipped ones if present."""
    from neural_render import hub

    found = {}
    for key, given, option in (("inverse", cfg.inverse_model, "--inverse-model"), ("forward", cfg.model, "--model")):
        found[key] = hub.resolve_model(given, key, option) if given is not None else hub.default_model(key)
    return found


def model_status(cfg: ServeConfig) -> str:
    """One Markdown line telling what uploaded videos can use."""
    models = find_models(cfg)
    missing = [k for k, v in models.items() if v is None]
    if missing:
        return NEEDS_MODEL.format(missing=", ".join(missing))
    return f"**Uploaded MP4s** use the neural pipelines: inverse `{models['inverse']}`, forward `{models['forward']}`."


def envmap_choices() -> list[str]:
    """Names of every shipped env map (train, val, test, train_extra), sorted."""
    from neural_render.data_assets import envmap_split

    return sorted({name for names in envmap_split().values() for name in names})


def parse_color(text: str) -> str:
    """A colour picker value ('#rrggbb', '#rgb', 'rgb(r, g, b)' or 'rgba(r, g, b, a)') -> '#rrggbb'."""
    value = (text or "").strip().lower()
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return value
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return "#" + "".join(c * 2 for c in value[1:])
    match = re.fullmatch(r"rgba?\(([^)]*)\)", value)
    if match:
        parts = [p.strip() for p in match.group(1).split(",")]
        try:
            rgb = [float(p) for p in parts[:3]]
        except ValueError:
            rgb = []
        if len(parts) in (3, 4) and len(rgb) == 3 and all(0.0 <= v <= 255.0 for v in rgb):
            return "#" + "".join(f"{round(v):02x}" for v in rgb)
    raise NeuralRenderError(f"colour must look like #rrggbb, got {text!r}")


def material_edits(passes, roughness: float, metallic: float, color: str) -> dict:
    """The chosen passes as validated edits (``neural-render edit``'s parser):
    {'roughness': x, 'basecolor': (r, g, b)}."""
    from neural_render.pipelines.material_text import parse_edits

    values = {"basecolor": parse_color(color), "roughness": roughness, "metallic": metallic}
    unknown = [p for p in passes or [] if p not in values]
    if unknown:
        raise NeuralRenderError(f"cannot edit {unknown}; editable: {list(PASSES)}")
    return parse_edits([f"{p}={values[p]}" for p in passes or []])


def load_light(envmap: str | None, env_file: str | None, yaw: float, pitch: float, roll: float):
    """The shipped env map ``envmap`` or an uploaded .hdr/.exr ``env_file`` (takes precedence), rotated (degrees)."""
    from neural_render.io.envmap_input import load_env

    if env_file:
        if Path(env_file).suffix.lower() not in (".hdr", ".exr"):
            raise NeuralRenderError("an uploaded env map must be an .hdr or .exr file", Path(env_file).name)
        name = env_file
    elif envmap:
        name = envmap
    else:
        raise NeuralRenderError("pick a shipped env map or upload an .hdr/.exr")
    return load_env(name, f"{float(yaw)},{float(pitch)},{float(roll)}")


def _demo_scene(cfg: ServeConfig):
    from neural_render.demo.scene import demo_scene

    key = ("scene", cfg.frames, cfg.width, cfg.height)
    if key not in _CACHE:
        _CACHE[key] = demo_scene(cfg.frames, cfg.width, cfg.height)
    return _CACHE[key]


def render_demo(cfg: ServeConfig, env, edits: dict, target: str):
    """The demo scene under ``env`` with ``edits`` on ``target`` -> (1, T, 3, H, W) linear (classical split-sum)."""
    from neural_render.pipelines.relight import apply_material_edit
    from neural_render.render.shade import prepare_ibl, shade

    scene = _demo_scene(cfg)
    gbuffer = scene.gbuffer
    if edits and target != TARGET_NONE:
        if target == TARGET_ALL:
            mask = gbuffer.mask
        elif target in OBJECTS:
            mask = (scene.object_ids == OBJECTS[target]).float()
        else:
            raise NeuralRenderError(f"unknown edit target {target!r}")
        gbuffer = apply_material_edit(gbuffer, mask, edits)
    return shade(gbuffer, scene.camera, prepare_ibl(env))


def _relight_pipeline(cfg: ServeConfig, models: dict):
    from neural_render import hub

    key = ("pipe", str(models["inverse"]), str(models["forward"]), cfg.device)
    if key not in _CACHE:
        _CACHE[key] = hub.load_relight(models["inverse"], models["forward"], cfg.device)
    return _CACHE[key]


def render_upload(cfg: ServeConfig, video_file: str, env, edits: dict, target: str):
    """An uploaded video relit (and edited) by the neural pipelines -> ((1, T, 3, H, W) linear, fps, note)."""
    import torch

    from neural_render.io.video_input import read_input
    from neural_render.pipelines.relight import static_camera

    if target in OBJECTS and edits:
        raise NeuralRenderError("object ids exist only for the demo scene; edit the whole frame of an uploaded video")
    if target not in (TARGET_NONE, TARGET_ALL, *OBJECTS):
        raise NeuralRenderError(f"unknown edit target {target!r}")
    video, _, fps, _ = read_input(video_file)         # NeuralRenderError for unreadable / empty files
    note = ""
    if video.shape[1] > cfg.max_frames:
        note = f" (first {cfg.max_frames} of {video.shape[1]} frames)"
        video = video[:, :cfg.max_frames].contiguous()
    models = find_models(cfg)
    missing = [k for k, v in models.items() if v is None]
    if missing:
        raise NeuralRenderError(NEEDS_MODEL.format(missing=", ".join(missing)) + NOTHING_RENDERED)
    pipe = _relight_pipeline(cfg, models)
    camera = static_camera(video)
    if edits and target == TARGET_ALL:
        mask = torch.ones(1, 1, 1, video.shape[3], video.shape[4])
        return pipe.edit(video, mask, edits, env, camera=camera).video, fps, note
    return pipe.relight(video, [env], camera=camera).videos[0], fps, note


def write_result(cfg: ServeConfig, rgb, fps: float) -> tuple[Path, Path]:
    """(1, T, 3, H, W) linear -> a fresh run folder with result.mp4 and still.png (middle frame)."""
    from neural_render.io import write_image
    from neural_render.io.video_output import write_mp4
    from neural_render.render.tonemap import display

    folder = Path(cfg.out_dir) / f"run_{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / "result.mp4", rgb, fps)
    still = display(rgb[0, rgb.shape[1] // 2]).permute(1, 2, 0).contiguous().numpy()
    write_image(folder / "still.png", still)
    return folder / "result.mp4", folder / "still.png"


def run_job(cfg: ServeConfig, source: str, video_file: str | None, envmap: str | None, env_file: str | None,
            yaw: float, pitch: float, roll: float, target: str, passes, roughness: float, metallic: float,
            color: str) -> tuple[str | None, str | None, str]:
    """The Run button: -> (result MP4 path or None, still PNG path or None, Markdown status)."""
    import time

    start = time.perf_counter()
    try:
        env = load_light(envmap, env_file, yaw, pitch, roll)
        edits = material_edits(passes, roughness, metallic, color) if target != TARGET_NONE and passes else {}
        if source == DEMO_SCENE:
            rgb, fps, note = render_demo(cfg, env, edits, target), cfg.fps, ""
            how = "demo scene, classical split-sum shader (exact G-buffers, not a neural model)"
        elif source == UPLOAD:
            if not video_file:
                raise NeuralRenderError("upload an MP4 first (or pick the demo scene)")
            rgb, fps, note = render_upload(cfg, video_file, env, edits, target)
            how = "uploaded video, neural inverse -> forward pipelines"
        else:
            raise NeuralRenderError(f"unknown source {source!r}")
        video, still = write_result(cfg, rgb, fps)
    except NeuralRenderError as err:
        return None, None, f"**Error:** {err}"
    t, h, w = rgb.shape[1], rgb.shape[3], rgb.shape[4]
    edit = "no material edit" if not edits else f"edited {', '.join(edits)} on {target}"
    return (str(video), str(still), f"Done: {how}; {t} frames{note} at {w}x{h}, light `{env.name}` rotated "
            f"({yaw:g}, {pitch:g}, {roll:g}) deg, {edit}; {time.perf_counter() - start:.1f} s.")


def build_app(cfg: ServeConfig | None = None):
    """The Gradio Blocks of the web demo (gradio is imported here only)."""
    import gradio as gr

    cfg = cfg or ServeConfig()
    names = envmap_choices()
    with gr.Blocks(title="neural-render web demo") as app:
        gr.Markdown("# neural-render: relight and edit materials\n"
                    f"Demo scene: {cfg.frames} frames at {cfg.width}x{cfg.height}, exact G-buffers, classical "
                    f"split-sum shader (what `neural-render demo` uses).\n\n{model_status(cfg)}")
        with gr.Row():
            with gr.Column():
                source = gr.Radio([DEMO_SCENE, UPLOAD], value=DEMO_SCENE, label="Clip", elem_id="source")
                video_in = gr.Video(label="MP4 to re-render (with 'uploaded MP4')", sources=["upload"],
                                    elem_id="video-in")
                envmap = gr.Dropdown(names, value=DEFAULT_ENVMAP if DEFAULT_ENVMAP in names else names[0],
                                     label="Shipped env map", elem_id="envmap")
                env_file = gr.File(label="...or upload an .hdr / .exr (overrides the shipped one)",
                                   file_types=[".hdr", ".exr"], type="filepath", elem_id="env-file")
                yaw = gr.Slider(-180, 180, value=0, step=1, label="yaw (deg)", elem_id="yaw")
                pitch = gr.Slider(-90, 90, value=0, step=1, label="pitch (deg)", elem_id="pitch")
                roll = gr.Slider(-180, 180, value=0, step=1, label="roll (deg)", elem_id="roll")
                target = gr.Dropdown([TARGET_NONE, TARGET_ALL, *OBJECTS], value=TARGET_NONE,
                                     label="Material edit applies to", elem_id="target")
                passes = gr.CheckboxGroup(list(PASSES), value=list(PASSES), label="Passes to set", elem_id="passes")
                roughness = gr.Slider(0, 1, value=0.1, step=0.01, label="roughness", elem_id="roughness")
                metallic = gr.Slider(0, 1, value=1.0, step=0.01, label="metallic", elem_id="metallic")
                color = gr.ColorPicker(value="#2a5bd7", label="basecolor (sRGB)", elem_id="basecolor")
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                video_out = gr.Video(label="Result video", autoplay=True, loop=True, interactive=False,
                                     elem_id="result-video")
                still_out = gr.Image(label="Result still (middle frame)", type="filepath", interactive=False,
                                     height=300, elem_id="result-still")
                status = gr.Markdown("Press **Run**.", elem_id="status")

        def on_run(*values):
            return run_job(cfg, *values)

        run.click(on_run, [source, video_in, envmap, env_file, yaw, pitch, roll, target, passes, roughness, metallic,
                           color], [video_out, still_out, status], api_name="run")
    return app
