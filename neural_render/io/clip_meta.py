"""meta.json of a clip folder: :class:`ClipMeta`, its JSON form and field-by-field validation.

The fields are documented in :mod:`neural_render.io.clip`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from neural_render.errors import NeuralRenderError
from neural_render.io.exr import GBUFFER_CHANNELS
from neural_render.types import Camera

CLIP_FORMAT = "neural_render.clip"
CLIP_VERSION = 1
META_NAME = "meta.json"
FRAMES_DIR = "frames"
RGB_VIDEO = "rgb.mp4"
RGB_SOURCES = ("exr", "mp4", None)
_REQUIRED = ("format", "version", "width", "height", "num_frames", "fps", "intrinsics", "camera_to_world")
_INTRINSIC_KEYS = ("fx", "fy", "cx", "cy")


# ------------------------------------------------------------------------------------------ validation helpers
def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_number(x) -> bool:
    return _is_number(x) and x > 0


def _matrix(value, rows: int, cols: int, what: str, source) -> list[list[float]]:
    if not (isinstance(value, (list, tuple)) and len(value) == rows
            and all(isinstance(r, (list, tuple)) and len(r) == cols for r in value)):
        raise NeuralRenderError(f"{what} must be a {rows}x{cols} list of lists of numbers", source)
    if not all(_is_number(v) for r in value for v in r):
        raise NeuralRenderError(f"{what} must hold finite numbers only", source)
    return [[float(v) for v in r] for r in value]


def _check_rotation(rot: list[list[float]], what: str, source) -> None:
    r = np.asarray(rot, dtype=np.float64)
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or abs(np.linalg.det(r) - 1.0) > 1e-4:
        raise NeuralRenderError(f"{what} is not a rotation (orthonormal, det +1)", source)


@dataclass
class ClipMeta:
    """Contents of meta.json (see module doc). Construction validates every field (NeuralRenderError)."""

    width: int
    height: int
    num_frames: int
    fps: float
    intrinsics: dict[str, float]
    camera_to_world: list[list[list[float]]]
    camera_convention: str = "opengl"
    envmap: dict | None = None
    depth_scale: float | None = None
    units: str = "meters"
    passes: list[str] = field(default_factory=list)
    rgb_source: str | None = None
    extra: dict = field(default_factory=dict)
    format: str = CLIP_FORMAT
    version: int = CLIP_VERSION

    def __post_init__(self):
        self.validate()

    def validate(self, source: str | os.PathLike | None = None) -> "ClipMeta":
        """Check every field's type, shape and range; normalise numbers to float. Errors name ``source``."""
        if self.format != CLIP_FORMAT:
            raise NeuralRenderError(f"format is {self.format!r}, expected {CLIP_FORMAT!r}", source)
        if not _is_int(self.version) or self.version != CLIP_VERSION:
            raise NeuralRenderError(f"unsupported clip version {self.version!r} (this reader knows {CLIP_VERSION})",
                                    source)
        for name in ("width", "height", "num_frames"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise NeuralRenderError(f"{name} must be a positive integer, got {value!r}", source)
        if not _positive_number(self.fps):
            raise NeuralRenderError(f"fps must be a positive number, got {self.fps!r}", source)
        k = self.intrinsics
        if (not isinstance(k, dict) or set(k) != set(_INTRINSIC_KEYS) or not all(_is_number(v) for v in k.values())
                or k["fx"] <= 0 or k["fy"] <= 0):
            raise NeuralRenderError(f"intrinsics must be {{fx, fy, cx, cy}} of finite numbers with fx, fy > 0, "
                                    f"got {k!r}", source)
        self.fps, self.intrinsics = float(self.fps), {key: float(k[key]) for key in _INTRINSIC_KEYS}
        poses = self.camera_to_world
        if not isinstance(poses, (list, tuple)) or len(poses) != self.num_frames:
            n = len(poses) if isinstance(poses, (list, tuple)) else type(poses).__name__
            raise NeuralRenderError(f"camera_to_world must list num_frames={self.num_frames} 4x4 poses, got {n}",
                                    source)
        self.camera_to_world = [_matrix(m, 4, 4, f"camera_to_world[{t}]", source) for t, m in enumerate(poses)]
        for t, m in enumerate(self.camera_to_world):
            if m[3] != [0.0, 0.0, 0.0, 1.0]:
                raise NeuralRenderError(f"camera_to_world[{t}] last row must be [0, 0, 0, 1]", source)
            _check_rotation([row[:3] for row in m[:3]], f"camera_to_world[{t}] rotation", source)
        if self.camera_convention != "opengl":
            raise NeuralRenderError(f"camera_convention must be 'opengl', got {self.camera_convention!r}", source)
        self._validate_envmap(source)
        if self.depth_scale is not None and not _positive_number(self.depth_scale):
            raise NeuralRenderError(f"depth_scale must be a positive number or null, got {self.depth_scale!r}", source)
        self.depth_scale = None if self.depth_scale is None else float(self.depth_scale)
        if not isinstance(self.units, str) or not self.units:
            raise NeuralRenderError(f"units must be a non-empty string, got {self.units!r}", source)
        if (not isinstance(self.passes, (list, tuple))
                or not all(isinstance(p, str) and p in GBUFFER_CHANNELS for p in self.passes)
                or len(set(self.passes)) != len(self.passes)):
            raise NeuralRenderError(f"passes must list distinct names from {list(GBUFFER_CHANNELS)}, "
                                    f"got {self.passes!r}", source)
        self.passes = list(self.passes)
        if self.rgb_source not in RGB_SOURCES:
            raise NeuralRenderError(f"rgb_source must be 'exr', 'mp4' or null, got {self.rgb_source!r}", source)
        if (self.rgb_source == "exr") != ("rgb" in self.passes):
            raise NeuralRenderError("rgb_source is 'exr' exactly when 'rgb' is among passes", source)
        if not isinstance(self.extra, dict):
            raise NeuralRenderError(f"extra must be a JSON object, got {type(self.extra).__name__}", source)
        return self

    def _validate_envmap(self, source) -> None:
        env = self.envmap
        if env is None:
            return
        if not isinstance(env, dict) or not {"path", "rotation_deg"} <= set(env) \
                or not set(env) <= {"path", "rotation_deg", "rotation_matrix"}:
            raise NeuralRenderError("envmap must be null or {path, rotation_deg[, rotation_matrix]}", source)
        if not isinstance(env["path"], str) or not env["path"]:
            raise NeuralRenderError("envmap.path must be a non-empty string", source)
        angles = env["rotation_deg"]
        if not (isinstance(angles, (list, tuple)) and len(angles) == 3 and all(_is_number(a) for a in angles)):
            raise NeuralRenderError(f"envmap.rotation_deg must be [yaw, pitch, roll] numbers, got {angles!r}", source)
        clean = {"path": env["path"], "rotation_deg": [float(a) for a in angles]}
        if "rotation_matrix" in env:
            clean["rotation_matrix"] = _matrix(env["rotation_matrix"], 3, 3, "envmap.rotation_matrix", source)
            _check_rotation(clean["rotation_matrix"], "envmap.rotation_matrix", source)
        self.envmap = clean

    # ---------------------------------------------------------------------------------------- (de)serialising
    def to_dict(self) -> dict:
        """Plain JSON-ready dict (deep copy)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """meta.json text (format and version first; floats in repr precision)."""
        data = self.to_dict()
        ordered = {"format": data.pop("format"), "version": data.pop("version"), **data}
        try:
            return json.dumps(ordered, indent=1, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:
            raise NeuralRenderError(f"clip meta is not JSON-serialisable (check 'extra'): {err}") from err

    @classmethod
    def from_json(cls, data: str | bytes | dict, source: str | os.PathLike | None = None) -> "ClipMeta":
        """Parse meta.json text (or an already-parsed dict); every error names ``source``."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as err:
                raise NeuralRenderError(f"invalid JSON: {err}", source) from err
        if not isinstance(data, dict):
            raise NeuralRenderError("meta must be a JSON object", source)
        if data.get("format") != CLIP_FORMAT:
            raise NeuralRenderError(f"not a neural_render clip: format is {data.get('format')!r}", source)
        if data.get("version") != CLIP_VERSION or not _is_int(data.get("version")):
            raise NeuralRenderError(f"unsupported clip version {data.get('version')!r} "
                                    f"(this reader knows {CLIP_VERSION})", source)
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise NeuralRenderError(f"missing field(s) {', '.join(missing)}", source)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NeuralRenderError(f"unknown field(s) {', '.join(unknown)} (put free-form data in 'extra')", source)
        try:
            return cls(**data)
        except NeuralRenderError as err:
            raise NeuralRenderError(err.reason, source) from err

    @classmethod
    def for_camera(cls, camera: Camera, fps: float = 24.0, **fields) -> "ClipMeta":
        """Meta whose size, frame count, intrinsics and poses come from a B=1 ``camera``."""
        if camera.intrinsics.shape[0] != 1:
            raise NeuralRenderError(f"a clip holds one camera (B=1), got B={camera.intrinsics.shape[0]}")
        k = camera.intrinsics[0].tolist()
        return cls(width=int(camera.width), height=int(camera.height), num_frames=camera.num_frames, fps=fps,
                   intrinsics=dict(zip(_INTRINSIC_KEYS, k)),
                   camera_to_world=camera.camera_to_world[0].to(torch.float32).tolist(), **fields)

    def camera(self) -> Camera:
        """The clip's camera, B=1, float32."""
        k = torch.tensor([[self.intrinsics[key] for key in _INTRINSIC_KEYS]], dtype=torch.float32)
        return Camera(k, torch.tensor([self.camera_to_world], dtype=torch.float32), self.width, self.height)
