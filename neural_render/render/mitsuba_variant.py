"""Choose the Mitsuba 3 variant: ``llvm_ad_rgb`` when LLVM is loadable (Debian: libllvm19), else ``scalar_rgb``.

``NEURAL_RENDER_MITSUBA_VARIANT`` overrides the choice. The result is reported by ``neural-render info``
and by every command that renders with Mitsuba.
"""

from __future__ import annotations

import os

from neural_render.errors import NeuralRenderError

PREFERRED_VARIANTS = ("llvm_ad_rgb", "scalar_rgb")
ENV_OVERRIDE = "NEURAL_RENDER_MITSUBA_VARIANT"


def select_mitsuba_variant(preferred: tuple[str, ...] = PREFERRED_VARIANTS):
    """Set and return the first usable variant; returns the ``mitsuba`` module ready to use."""
    try:
        import mitsuba as mi
    except ImportError as err:
        raise NeuralRenderError(f"mitsuba is not installed ({err}); pip install mitsuba") from err
    forced = os.environ.get(ENV_OVERRIDE)
    candidates = (forced,) if forced else preferred
    errors = []
    for name in candidates:
        try:
            mi.set_variant(name)
            return mi
        except Exception as err:  # missing LLVM raises ImportError/RuntimeError depending on version
            errors.append(f"{name}: {err}")
    raise NeuralRenderError("no usable Mitsuba variant: " + "; ".join(errors))


def mitsuba_status() -> str:
    """Human-readable variant report, e.g. 'llvm_ad_rgb' or 'scalar_rgb (llvm_ad_rgb unusable: ...)'."""
    try:
        mi = select_mitsuba_variant()
    except NeuralRenderError as err:
        return f"unusable ({err.reason})"
    variant = mi.variant()
    if variant != PREFERRED_VARIANTS[0] and not os.environ.get(ENV_OVERRIDE):
        return f"{variant} (llvm_ad_rgb unusable: install libllvm19)"
    return variant
