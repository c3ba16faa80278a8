"""Environment map: an equirectangular HDR image plus a rotation, applied lazily (no resampling loss).

Equirectangular convention (identical to Mitsuba 3's ``envmap`` emitter, so our shader and Mitsuba
see the same sky): a world direction d = (x, y, z) maps to
    u = atan2(x, -z) / (2 pi)  wrapped into [0, 1)   (column, left -> right)
    v = acos(y) / pi           in [0, 1]             (row, top = +Y up)
and pixel (row i, col j) has its centre at ((j + 0.5) / W, (i + 0.5) / H).

Rotation semantics: ``env.rotated(R)`` is the sky turned by R, i.e. the radiance arriving from
world direction d is ``image(R^T d)``. ``rotated(yaw, pitch, roll)`` uses
:func:`neural_render.render.rotation.euler_to_matrix` (degrees; yaw about +Y).

Plain data: the image, its rotation and a name, validated. Functions that compute on env maps (radiance lookup with
the rotation applied: :func:`neural_render.render.envmap.env_lookup`; baking the rotation into the image:
:func:`neural_render.render.envmap.bake`; encodings, prefiltering, ...) live in :mod:`neural_render.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from neural_render.errors import NeuralRenderError


@dataclass
class EnvMap:
    """image: (3, H, W) float32 linear radiance (W == 2 H recommended); rotation: (3, 3) world-from-map."""

    image: Tensor
    rotation: Tensor = field(default_factory=lambda: torch.eye(3))
    name: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self, source: str | None = None) -> "EnvMap":
        x = self.image
        src = source or self.name or None
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[0] != 3 or x.shape[1] < 2 or x.shape[2] < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise NeuralRenderError(f"env map must be a (3, H, W) tensor with H, W >= 2, got {shape}", src)
        if x.dtype != torch.float32:
            raise NeuralRenderError(f"env map must be float32, got {x.dtype}", src)
        if not bool(torch.isfinite(x).all()):
            raise NeuralRenderError("env map contains NaN or inf", src)
        if float(x.min()) < 0.0:
            raise NeuralRenderError("env map has negative radiance", src)
        r = self.rotation
        if r.shape != (3, 3) or not bool(torch.isfinite(r).all()):
            raise NeuralRenderError(f"env map rotation must be a finite (3, 3) matrix, got {tuple(r.shape)}", src)
        return self

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]

    def rotated(self, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                matrix: Tensor | None = None) -> "EnvMap":
        """The same sky turned by ``matrix`` or by yaw/pitch/roll in degrees (composed after the current rotation; the
        image is shared, only the rotation changes)."""
        from neural_render.render.rotation import euler_to_matrix
        r = euler_to_matrix(yaw, pitch, roll) if matrix is None else matrix.to(torch.float32)
        return EnvMap(self.image, r.to(self.rotation) @ self.rotation, self.name)
