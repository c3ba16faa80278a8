"""Material values written as text by users: ``--set PASS=VALUE`` edits (``neural-render edit``, the web demo) and
``--material basecolor=...,roughness=...,metallic=...`` of an inserted object (``neural-render insert``).

Colours: ``#rrggbb`` is sRGB (converted to linear), comma-separated numbers are linear values in [0, 1]. Bad text
raises NeuralRenderError quoting it.
"""

from __future__ import annotations


def parse_floats(text: str, count: int | None, what: str) -> list[float]:
    """'1,2.5,-3' -> finite floats (exactly ``count`` of them unless None); ``what`` names the option in errors."""
    import math

    from neural_render.errors import NeuralRenderError

    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise NeuralRenderError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if (count is not None and len(values) != count) or not all(math.isfinite(v) for v in values):
        raise NeuralRenderError(f"{what} must be {count} finite comma-separated numbers, got {text!r}")
    return values


def hex_to_linear(text: str) -> list[float]:
    """'#rrggbb' (sRGB) -> [r, g, b] linear in [0, 1] (insert's ``--material basecolor``)."""
    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.render.tonemap import srgb_to_linear

    digits = text.lstrip("#")
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise NeuralRenderError(f"--material basecolor: bad colour {text!r} (use #rrggbb)")
    srgb = torch.tensor([int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])
    return [float(v) for v in srgb_to_linear(srgb)]


def parse_material(text: str):
    """'basecolor=0.8,0.2,0.1,roughness=0.3,metallic=0' (or basecolor=#rrggbb sRGB / one grey) -> raster.Material
    (defaults: basecolor 0.8, roughness 0.5, metallic 0)."""
    from neural_render.errors import NeuralRenderError
    from neural_render.raster import Material

    fields: dict[str, list[str]] = {}
    key = None
    for token in (t.strip() for t in str(text).split(",")):
        if "=" in token:
            key, value = (s.strip() for s in token.split("=", 1))
            if key not in ("basecolor", "roughness", "metallic"):
                raise NeuralRenderError(f"--material: unknown key {key!r} (basecolor, roughness, metallic)")
            if key in fields:
                raise NeuralRenderError(f"--material: {key} given twice")
            fields[key] = [value]
        elif key is not None and token:
            fields[key].append(token)
        else:
            raise NeuralRenderError(f"--material: expected key=value, got {token!r} in {text!r}")
    values = {"basecolor": [0.8], "roughness": [0.5], "metallic": [0.0]}
    for name, raw in fields.items():
        if name == "basecolor" and len(raw) == 1 and raw[0].startswith("#"):
            values[name] = hex_to_linear(raw[0])
            continue
        values[name] = parse_floats(",".join(raw), None, f"--material {name}")
    if len(values["basecolor"]) not in (1, 3) or len(values["roughness"]) != 1 or len(values["metallic"]) != 1:
        raise NeuralRenderError("--material: basecolor takes 1 or 3 values, roughness and metallic 1")
    return Material(values["basecolor"], values["roughness"][0], values["metallic"][0], name="inserted")


def parse_edits(items: list[str]) -> dict:
    """['roughness=0.1', 'basecolor=#aa2211', ...] -> {"roughness": 0.1, "basecolor": (r, g, b) linear}: the edits
    of pipelines/relight.apply_material_edit (values in [0, 1]; at least one)."""
    import math

    import torch

    from neural_render.errors import NeuralRenderError
    from neural_render.pipelines.relight import EDITABLE
    from neural_render.render.tonemap import srgb_to_linear

    if not items:
        raise NeuralRenderError("give at least one --set PASS=VALUE (basecolor, roughness, metallic)")
    edits = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or name not in EDITABLE or not value:
            raise NeuralRenderError(f"bad --set {item!r}: use basecolor=#rrggbb, roughness=x or metallic=x")
        try:
            if name == "basecolor" and value.startswith("#"):
                if len(value) != 7:
                    raise ValueError("hex colour must look like #rrggbb")
                srgb = torch.tensor([int(value[i:i + 2], 16) for i in (1, 3, 5)], dtype=torch.float32) / 255.0
                numbers = tuple(float(v) for v in srgb_to_linear(srgb))
            else:
                numbers = tuple(float(v) for v in value.split(","))
        except ValueError as err:
            raise NeuralRenderError(f"bad --set {item!r}: {err}") from None
        if len(numbers) != EDITABLE[name] or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in numbers):
            raise NeuralRenderError(f"bad --set {item!r}: {name} takes {EDITABLE[name]} value(s) in [0, 1]")
        edits[name] = numbers if len(numbers) > 1 else numbers[0]
    return edits
